"""The release's rules as options of the policy loop: each reproduces the release's rule on a small hand-built
case, the kit's defaults stay the embedded pipeline's, and the GPU profile chooses the release's behaviour."""
import math

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from torch import nn

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.grpo import adapt_sample_rate, sample_rate_signal
from cacovid_lib.method.policy import CompressionPolicy, scores
from cacovid_lib.method.sampling import frame_distributions, sample_rollouts
from cacovid_lib.method.selection import clip_max_probability, clip_max_probability_over_rollouts, select_tokens
from cacovid_lib.method.train_loop import PolicyTrainConfig, lr_factor, make_optimizer, train_policy


# ---- frame-mode clipping -------------------------------------------------------------------------------------------
def release_rule(p: torch.Tensor, rollouts: int) -> torch.Tensor:
    """The release's effect where its cap does not act, by hand: floor every frame at 1/rollouts², renormalise."""
    floored = p.clamp(min=1 / rollouts**2)
    return floored / floored.sum()


def test_release_frame_clipping_floors_at_one_over_rollouts_squared_and_does_not_cap():
    t, rollouts = 32, 8  # the release: 32 frames, G/4 = 8 frame rollouts
    p = torch.full((t,), 1e-6)
    p[3] = 1 - 31e-6  # a confident frame head
    rows = clip_max_probability_over_rollouts(p, rollouts, 3 / t)  # (8, 32)
    assert rows.shape == (rollouts, t) and torch.allclose(rows.sum(1), torch.ones(rollouts))
    top = 1 / (1 + 31 / 64)  # the top frame's share once the 31 others are floored at 1/64
    assert rows[:, 3] == pytest.approx(torch.full((rollouts,), top), abs=1e-5)
    assert torch.allclose(rows[:, 0], torch.full((rollouts,), (1 / 64) * top), atol=1e-6)
    kit = clip_max_probability(p, 3 / t)
    assert float(kit[3]) == pytest.approx(3 / t) and float(kit[0]) == pytest.approx((1 - 3 / t) / 31, rel=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_release_frame_clipping_equals_the_hand_rule_on_random_frame_heads(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(32, generator=g) * (1 + seed), dim=0)  # from flat to very peaked
    rows = clip_max_probability_over_rollouts(p, 8, 3 / 32)
    assert torch.allclose(rows, release_rule(p, 8).expand(8, -1), atol=1e-6)


def test_frame_distributions_choose_the_clipping_and_refuse_an_unknown_one():
    f = torch.tensor([6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    kit, release = frame_distributions(f, 4, "kit"), frame_distributions(f, 4, "release")
    assert kit.shape == release.shape == (4, 8)
    assert float(kit[0, 0]) == pytest.approx(3 / 8)  # capped
    assert torch.allclose(release[0], release_rule(torch.softmax(f, 0), 4))  # floor 1/16, top keeps its mass
    assert float(release[0, 0]) > 0.5
    with pytest.raises(KitInputError, match="frame_clipping: 'paper'.*valid: kit, release"):
        frame_distributions(f, 4, "paper")


def test_release_frame_clipping_in_rollouts_keeps_the_frame_budget():
    t, h, w = 8, 4, 4
    g = torch.Generator().manual_seed(0)
    roll = sample_rollouts(torch.randn(t * h * w, generator=g), torch.randn(t, generator=g) * 5, torch.randn(t * h * w, 8),
                           (t, h, w), 16, 0.125, generator=g, frame_clipping="release")
    assert roll.frame_actions.shape == (4, t) and (roll.frame_actions.sum(1) == 1).all()


# ---- adaptive sample rate ------------------------------------------------------------------------------------------
def test_release_rate_reads_the_whole_memory_and_kit_reads_this_iteration():
    iteration = torch.tensor([1.0, 1.0, 1.0, 1.0])  # this iteration: every token rollout succeeded
    memory = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # two failed iterations before
    assert sample_rate_signal(iteration, memory, "kit") == 1.0
    assert sample_rate_signal(iteration, memory, "release") == pytest.approx(1 / 3)
    kit = adapt_sample_rate(0.02, sample_rate_signal(iteration, memory, "kit"), floor=0.01, cap=0.12)
    release = adapt_sample_rate(0.02, sample_rate_signal(iteration, memory, "release"), floor=0.01, cap=0.12)
    assert (kit, release) == (0.01, 0.02)  # the kit halves the rate, the release keeps it


def tiny_task(num_items=2):
    from conftest import inputs_for, planted_world, qwen2_llm

    torch.manual_seed(0)
    video, _ = planted_world(num_items, seed=0)
    return qwen2_llm(), inputs_for(video), len(video)


@pytest.mark.parametrize("schedule, expected", [
    ("kit", [0.25, 0.125, 0.25, 0.125, 0.0625, 0.0625, 0.0625, 0.0625]),  # each item's rate carried to its next visit
    ("release", [0.25, 0.125] * 4),  # every visit starts at sample_rate
])
def test_each_item_visit_starts_where_the_schedule_says(schedule, expected):
    llm, inputs_fn, n = tiny_task()

    def always_right(idx, inputs, masks):  # every rollout succeeds: the rate halves after every iteration
        return torch.ones(masks.shape[:2])

    cfg = PolicyTrainConfig(steps=8, items_per_step=1, num_generations=8, num_iter_for_item=2, sample_rate=0.25,
                            min_sample_rate=0.0625, max_sample_rate=0.5, sample_rate_schedule=schedule)
    state = train_policy(CompressionPolicy.from_llm(llm), inputs_fn, always_right, n, cfg, progress=False)
    assert [r["sample_rate"] for r in state.history] == expected


# ---- learning-rate schedule ----------------------------------------------------------------------------------------
def test_release_cycling_cosine_is_zero_at_20_and_60_percent_and_full_at_40_and_80():
    factors = [lr_factor(s, 100, 5, "release_cycling") for s in (0, 10, 20, 40, 60, 80, 100)]
    assert factors == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.0, 1.0, 0.0], abs=1e-12)
    one_cosine = [lr_factor(s, 100, 5, "cosine") for s in (0, 20, 50, 100, 120)]
    assert one_cosine == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi * 0.2)), 0.5, 0.0, 0.0], abs=1e-12)


def test_optimizer_steps_the_chosen_schedule():
    model = nn.ModuleDict({"layers": nn.Linear(2, 2), "head": nn.Linear(2, 1)})
    for schedule in ("cosine", "release_cycling"):
        cfg = PolicyTrainConfig(steps=20, num_iter_for_item=5, lr=1.0, lr_schedule=schedule)
        opt, sched = make_optimizer(model, cfg)
        seen = []
        for _ in range(8):
            opt.step()
            sched.step()
            seen.append(sched.get_last_lr())
        assert [heads for heads, _ in seen] == pytest.approx([lr_factor(s, 20, 5, schedule) for s in range(1, 9)])
        assert [layer for _, layer in seen] == pytest.approx([0.1 * lr_factor(s, 20, 5, schedule) for s in range(1, 9)])
    assert seen[3][0] == pytest.approx(0.0, abs=1e-12) and seen[7][0] == pytest.approx(1.0)  # cycled back (period 4)


# ---- float32 scores ------------------------------------------------------------------------------------------------
def test_scores_of_bf16_logits_select_as_the_float32_computation():
    grid = (8, 14, 14)
    t, h, w = grid
    rounded = 0
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        tok = (torch.randn(t * h * w, 2, generator=g) * 3).bfloat16()  # the policy's bf16 logits
        fr = (torch.randn(t, 2, generator=g) * 3).bfloat16()
        assert scores(tok).dtype == torch.float32
        ours = select_tokens(scores(fr), scores(tok), grid, 0.1)
        assert torch.equal(ours, select_tokens(scores(fr.float()), scores(tok.float()), grid, 0.1))
        in_bf16 = select_tokens((fr[:, 1] - fr[:, 0]).float(), (tok[:, 1] - tok[:, 0]).float(), grid, 0.1)
        rounded += int((in_bf16 != ours).sum())
    assert rounded > 0  # the bf16 difference would have changed the selection: the test can fail


# ---- configuration -------------------------------------------------------------------------------------------------
def test_defaults_are_the_kits_and_the_gpu_profile_chooses_the_release():
    from cacovid_lib.cli.launch_policy_training import train_config

    kit = PolicyTrainConfig()
    assert (kit.frame_clipping, kit.sample_rate_schedule, kit.lr_schedule, kit.reward_max_new_tokens) == ("kit", "kit", "cosine", 8)
    embedded = yaml.safe_load((ROOT / "params.yaml").read_text())["policy"]["train"]
    assert not {"frame_clipping", "sample_rate_schedule", "lr_schedule", "reward_max_new_tokens"} & set(embedded)
    gpu, _ = train_config(yaml.safe_load((ROOT / "paper" / "params.yaml").read_text()), "paper/params.yaml", video_r1=True)
    assert (gpu.frame_clipping, gpu.sample_rate_schedule, gpu.lr_schedule, gpu.reward_max_new_tokens) == \
        ("release", "release", "release_cycling", 768)


@pytest.mark.parametrize("field, value, message", [
    ("frame_clipping", "paper", "frame_clipping: 'paper' is unknown; valid: kit, release"),
    ("sample_rate_schedule", "memory", "sample_rate_schedule: 'memory' is unknown; valid: kit, release"),
    ("lr_schedule", "linear", "lr_schedule: 'linear' is unknown; valid: cosine, release_cycling"),
    ("reward_max_new_tokens", 0, "reward_max_new_tokens: 0 must be at least 1"),
])
def test_unknown_option_values_are_one_line_errors(field, value, message):
    with pytest.raises(KitInputError, match=message):
        PolicyTrainConfig(**{field: value})


def test_the_release_options_train_end_to_end():
    llm, inputs_fn, n = tiny_task(4)
    cfg = PolicyTrainConfig(steps=10, items_per_step=2, num_generations=8, num_iter_for_item=5, sample_rate=0.25,
                            min_sample_rate=0.125, max_sample_rate=0.5, frame_clipping="release",
                            sample_rate_schedule="release", lr_schedule="release_cycling")
    rng = np.random.default_rng(0)
    state = train_policy(CompressionPolicy.from_llm(llm), inputs_fn,
                         lambda idx, inputs, masks: torch.as_tensor(rng.random(masks.shape[:2]) < 0.5).float(), n, cfg,
                         progress=False)
    assert state.step == 10 and all(math.isfinite(r["loss"]) for r in state.history)
    assert state.history[0]["lr"] == pytest.approx(cfg.lr * lr_factor(1, 10, 5, "release_cycling"))
