"""The policy loop's plumbing: a killed and resumed run ends where an uninterrupted one does, and two
processes under `accelerate launch` (CPU, gloo) hold identical policy weights."""
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, inputs_for, planted_world, qwen2_llm
from safetensors.torch import load_file

from cacovid_lib.method.policy import CompressionPolicy, load_policy
from cacovid_lib.method.train_loop import PolicyTrainConfig, load_trainer_state, save_training_checkpoint, train_policy


class Killed(Exception):
    pass


RELEASE_OPTIONS = {"frame_clipping": "release", "sample_rate_schedule": "release", "lr_schedule": "release_cycling"}


@pytest.mark.parametrize("options", [{}, pytest.param(RELEASE_OPTIONS, marks=pytest.mark.slow)], ids=["kit", "release"])
def test_killed_and_resumed_training_ends_with_the_same_policy(tmp_path, options):
    llm = qwen2_llm()
    video, keys = planted_world(8, seed=0)

    def reward_fn(idx, inputs, masks):
        return torch.stack([masks[b][:, keys[i]].all(-1) for b, i in enumerate(idx)]).float()

    cfg = PolicyTrainConfig(steps=12, items_per_step=2, num_generations=8, num_iter_for_item=3, sample_rate=0.25,
                            min_sample_rate=0.125, max_sample_rate=0.5, lr=1e-2, checkpoint_every=6, seed=0, **options)
    whole = CompressionPolicy.from_llm(llm, seed=0)
    uninterrupted = train_policy(whole, inputs_for(video), reward_fn, len(video), cfg, progress=False)

    def save_then_die(policy, state, optimizer_state):
        save_training_checkpoint(tmp_path / "ckpt", policy, state, optimizer_state, cfg, "tiny")
        raise Killed

    with pytest.raises(Killed):
        train_policy(CompressionPolicy.from_llm(llm, seed=0), inputs_for(video), reward_fn, len(video), cfg,
                     checkpoint_fn=save_then_die, progress=False)
    state, optimizer_state = load_trainer_state(tmp_path / "ckpt")
    assert state.step == 6 and state.sample_rates
    resumed = load_policy(tmp_path / "ckpt", llm)
    end = train_policy(resumed, inputs_for(video), reward_fn, len(video), cfg, state=state, optimizer_state=optimizer_state,
                       progress=False)
    assert end.step == 12 and end.history == uninterrupted.history  # rewards, rates, lr and health alike
    for name, tensor in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_two_processes_under_accelerate_launch_hold_identical_weights(tmp_path, tiny_world, tiny_vlm):
    from cacovid_lib.embedded.small_vlm import save_model_folder

    # `--multi_gpu` picks accelerate's torchrun launcher (`--cpu` would start a single process); with no GPU the
    # processes run on the CPU and synchronise gradients over gloo
    save_model_folder(tiny_vlm.model, tiny_vlm.tokenizer, tmp_path / "vlm", {"test": True})
    params = {"world": {"num_frames": 8}, "policy": {"reward": "multiple_choice", "train": {
        "steps": 4, "items_per_step": 1, "num_generations": 8, "num_iter_for_item": 2, "lr": 0.01, "seed": 0}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cacovid_lib.cli.launch_policy_training",
           "--model", str(tmp_path / "vlm"), "--world", str(tiny_world), "--out", str(tmp_path / "policy"),
           "--params", str(tmp_path / "params.yaml"), "--save-replicas", str(tmp_path / "replicas")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = (load_file(str(tmp_path / "replicas" / f"process{i}.safetensors")) for i in (0, 1))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    initial = CompressionPolicy.from_llm(tiny_vlm.language_model, seed=0).state_dict()
    assert any(not torch.equal(a[n], initial[n]) for n in a)  # the replicas trained, in step
    saved = load_policy(tmp_path / "policy", tiny_vlm.language_model)
    assert all(torch.equal(saved.state_dict()[n], a[n]) for n in a)
