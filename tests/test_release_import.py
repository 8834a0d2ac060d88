"""Importing the authors' released policy (docs/method.md §7) from a fake sharded llava-hf checkpoint."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open as real_safe_open
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2Model

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, load_policy, score_mlp
from cacovid_lib.models import release_import
from cacovid_lib.models.release_import import import_release_policy, main, read_release_policy_tensors

HEADS = ("token_compress", "frame_compress")


def planted_policy(language_model) -> dict[str, torch.Tensor]:
    """Policy tensors as the release stores them: trained (so layer 0 is no longer the LLM's), bf16."""
    state = CompressionPolicy.from_llm(language_model, seed=7).state_dict()
    g = torch.Generator().manual_seed(1)
    return {k: (v + 0.01 * torch.randn(v.shape, generator=g)).to(torch.bfloat16) for k, v in state.items()}


def write_release(folder: Path, vlm, policy: dict[str, torch.Tensor]) -> dict[str, str]:
    """A released checkpoint: base model + `compression_policy.*` (+ the dead mode_selection head) in 3 shards
    with an index as transformers writes it. Shard 1 is base model only, shard 2 mixes base and policy layer,
    shard 3 holds the heads. Returns the weight map."""
    base = {k: v.clone() for k, v in vlm.model.state_dict().items() if k != "lm_head.weight"}  # tied, as transformers saves
    d = policy["token_compress.0.weight"].shape[1]
    mode_selection = score_mlp(d, out=3)  # the release's dead 3-way head (docs/method.md §2)
    policy = {**policy, **{f"mode_selection.{k}": v.detach() for k, v in mode_selection.state_dict().items()}}
    names = sorted(base)
    shards = [
        {k: base[k] for k in names[: len(names) // 2]},
        {**{k: base[k] for k in names[len(names) // 2:]},
         **{f"compression_policy.{k}": v for k, v in policy.items() if k.startswith("layers.") or k == "layernorm.weight"}},
        {f"compression_policy.{k}": v for k, v in policy.items() if k.split(".")[0] in HEADS + ("mode_selection",)},
    ]
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: v.contiguous() for k, v in shard.items()}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in shard})
    total = sum(v.numel() * v.element_size() for s in shards for v in s.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    vlm.model.config.save_pretrained(folder)
    vlm.tokenizer.save_pretrained(folder)
    return weight_map


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_vlm):
    folder = tmp_path_factory.mktemp("release") / "ckpt"
    policy = planted_policy(tiny_vlm.language_model)
    return folder, policy, write_release(folder, tiny_vlm, policy)


def copy_of(release, tmp_path) -> Path:
    return Path(shutil.copytree(release[0], tmp_path / "ckpt"))


class RecordingSafeOpen:
    """Wraps safe_open: records which files are opened and which tensors are read; exposes nothing else."""

    def __init__(self):
        self.opened, self.read = [], []

    def __call__(self, path, framework, **kw):
        self.opened.append(Path(path).name)
        recorder, handle = self, real_safe_open(path, framework=framework, **kw)

        class Handle:
            def __enter__(self):
                handle.__enter__()
                return self

            def __exit__(self, *exc):
                return handle.__exit__(*exc)

            def keys(self):
                return handle.keys()

            def get_tensor(self, name):
                recorder.read.append(name)
                return handle.get_tensor(name)

        return Handle()


def test_import_reads_only_policy_tensors_and_round_trips(release, tiny_vlm, tmp_path, monkeypatch):
    folder, planted, weight_map = release
    llm = tiny_vlm.language_model
    recorder = RecordingSafeOpen()
    monkeypatch.setattr(release_import, "safe_open", recorder)
    policy = import_release_policy(folder, tmp_path / "policy", llm)

    assert all(name.startswith("compression_policy.") and "mode_selection" not in name for name in recorder.read)
    assert sorted(recorder.read) == sorted(f"compression_policy.{k}" for k in planted)  # each read once
    assert "model-00001-of-00003.safetensors" not in recorder.opened  # base-model-only shard never opened
    assert sorted(recorder.opened) == ["model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]

    state = policy.state_dict()
    assert set(state) == set(planted)
    for name, tensor in planted.items():
        assert state[name].dtype == llm.dtype and torch.equal(state[name], tensor.to(llm.dtype)), name
    loaded = load_policy(tmp_path / "policy", llm)
    for name, tensor in state.items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    config = json.loads((tmp_path / "policy" / "policy_config.json").read_text())
    assert config["base_model"] == str(folder) and config["hidden_size"] == llm.config.hidden_size


def test_single_file_checkpoint_and_mode_selection_dropped(release, tiny_vlm, tmp_path):
    from safetensors.torch import load_file

    folder, planted, weight_map = release
    everything = {}
    for file in sorted(set(weight_map.values())):
        everything.update(load_file(str(folder / file)))
    single = tmp_path / "single"
    single.mkdir()
    save_file(everything, str(single / "model.safetensors"))
    tensors = read_release_policy_tensors(single)
    assert set(tensors) == set(planted) and not any(k.startswith("mode_selection") for k in tensors)
    assert all(torch.equal(tensors[k], v) for k, v in planted.items())


def test_cli_with_the_checkpoint_as_base_model(release, tiny_vlm, tmp_path, capsys):
    folder, planted, _ = release
    assert main([str(folder), str(tmp_path / "policy"), "--model", str(folder)]) == 0
    loaded = load_policy(tmp_path / "policy", tiny_vlm.language_model)
    assert all(torch.equal(loaded.state_dict()[k], v.float()) for k, v in planted.items())
    assert main([str(tmp_path / "nope"), str(tmp_path / "p2")]) == 2
    assert "nope: checkpoint folder not found" in capsys.readouterr().err


def _rewrite_index(folder: Path, edit) -> None:
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    edit(index)
    index_file.write_text(json.dumps(index))


def test_clear_errors_for_bad_checkpoints(release, tiny_vlm, tmp_path):
    folder, planted, weight_map = release
    llm = tiny_vlm.language_model

    with pytest.raises(KitInputError, match="missing: checkpoint folder not found"):
        read_release_policy_tensors(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitInputError, match="empty: no model.safetensors.index.json and no model.safetensors"):
        read_release_policy_tensors(tmp_path / "empty")

    ckpt = copy_of(release, tmp_path)
    (ckpt / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(KitInputError, match="model.safetensors.index.json: not valid JSON"):
        read_release_policy_tensors(ckpt)
    (ckpt / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(KitInputError, match="model.safetensors.index.json: malformed index"):
        read_release_policy_tensors(ckpt)

    ckpt = copy_of(release, tmp_path / "a")
    (ckpt / "model-00003-of-00003.safetensors").unlink()
    with pytest.raises(KitInputError, match="model-00003-of-00003.safetensors: shard listed in .* is missing"):
        read_release_policy_tensors(ckpt)
    (ckpt / "model-00003-of-00003.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(KitInputError, match="model-00003-of-00003.safetensors: cannot read safetensors header"):
        read_release_policy_tensors(ckpt)

    ckpt = copy_of(release, tmp_path / "b")  # the plain base model: no policy at all
    _rewrite_index(ckpt, lambda ix: ix.update(weight_map={k: v for k, v in ix["weight_map"].items()
                                                          if not k.startswith("compression_policy.")}))
    with pytest.raises(KitInputError, match="ckpt: has no compression_policy.\\* tensors: not a CaCoVID checkpoint"):
        read_release_policy_tensors(ckpt)

    ckpt = copy_of(release, tmp_path / "c")
    _rewrite_index(ckpt, lambda ix: ix["weight_map"].pop("compression_policy.token_compress.8.bias"))
    with pytest.raises(KitInputError, match="ckpt: compression_policy.token_compress.8.bias is missing"):
        import_release_policy(ckpt, tmp_path / "out", llm)
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_hidden_size_mismatch_names_tensor_and_shapes(tiny_vlm, tmp_path):
    """A policy trained for another base model (hidden 32) cannot be imported onto the tiny model (hidden 64)."""
    other = Qwen2Model(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=32))
    tensors = {f"compression_policy.{k}": v.contiguous() for k, v in CompressionPolicy.from_llm(other).state_dict().items()}
    tmp_path.joinpath("ckpt").mkdir()
    save_file(tensors, str(tmp_path / "ckpt" / "model.safetensors"))
    llm = tiny_vlm.language_model
    with pytest.raises(KitInputError, match=r"ckpt: compression_policy\.layers\.0\.\S+ has shape \[\d+(, \d+)?\], "
                                            r"the policy for this model expects \[\d+(, \d+)?\]"):
        import_release_policy(tmp_path / "ckpt", tmp_path / "out", llm)


def test_unexpected_policy_tensor_is_an_error(release, tiny_vlm, tmp_path):
    folder, planted, _ = release
    extra = {f"compression_policy.{k}": v for k, v in planted.items()}
    extra["compression_policy.value_head.weight"] = torch.zeros(2, 2)
    tmp_path.joinpath("ckpt").mkdir()
    save_file(extra, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(KitInputError, match="compression_policy.value_head.weight is not a tensor of the kit's policy"):
        import_release_policy(tmp_path / "ckpt", tmp_path / "out", tiny_vlm.language_model)


def test_a_truncated_shard_is_refused_before_the_base_model_loads(release, tmp_path, monkeypatch, capsys):
    from cacovid_lib.models import pretrained

    def load_pretrained(*args, **kw):
        raise AssertionError("the base model was loaded before the truncated shard was found")

    monkeypatch.setattr(pretrained, "load_pretrained", load_pretrained)
    for shard, cut in [("model-00003-of-00003.safetensors", 100), ("model-00001-of-00003.safetensors", 1000),
                       ("model-00002-of-00003.safetensors", 3)]:
        ckpt = copy_of(release, tmp_path / shard)
        data = (ckpt / shard).read_bytes()
        (ckpt / shard).write_bytes(data[:-cut] if cut > 8 else data[:cut])
        assert main([str(ckpt), str(tmp_path / shard / "policy")]) == 2  # shard 1: the base model's only
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {ckpt / shard}: truncated (") and err.endswith("download it again") and "\n" not in err
        assert not (tmp_path / shard / "policy").exists()
    ckpt = copy_of(release, tmp_path / "longer")
    with open(ckpt / "model-00003-of-00003.safetensors", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(KitInputError, match=r"model-00003-of-00003.safetensors: longer than its header says \(\d+ bytes, its "
                                            r"header gives \d+\); download it again"):
        read_release_policy_tensors(ckpt)
    release_import.check_checkpoint_files(release[0])  # the whole release passes
