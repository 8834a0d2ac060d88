"""The supervised upper bound (method/supervised.py, stages/policy_upper_bound.py): its loss is a balanced BCE,
its training finds planted key tokens, and on a tiny world its targets and table are the ground truth's."""
import numpy as np
import pytest
import torch
from conftest import PLANTED_GRID as GRID
from conftest import inputs_for, planted_world, qwen2_llm, top_k_recovers_keys

from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.selection import RELEASE_RULE, SelectionRule
from cacovid_lib.method.supervised import balanced_bce, frame_targets, supervised_loss, train_supervised_policy


def test_balanced_bce_weighs_positives_and_negatives_half_each():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    targets = torch.tensor([[True, False, False, False]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = 0.5 * bce(logits[0, :1], torch.ones(1)) + 0.5 * bce(logits[0, 1:], torch.zeros(3))
    assert torch.isclose(balanced_bce(logits, targets), expected)
    # a row with no positive counts its negatives only (half weight); perfect scores give a loss near 0
    assert torch.isclose(balanced_bce(logits[:, 1:], targets[:, 1:]), 0.5 * bce(logits[0, 1:], torch.zeros(3)))
    assert balanced_bce(torch.tensor([[20.0, -20.0]]), torch.tensor([[True, False]])) < 1e-6


def test_frame_targets_mark_frames_with_any_target_token():
    targets = torch.zeros(1, 2 * 2 * 2, dtype=torch.bool)
    targets[0, 5] = True  # frame 1
    assert frame_targets(targets, (2, 2, 2)).tolist() == [[False, True]]
    logits = torch.zeros(1, 8, 2)
    assert torch.isclose(supervised_loss(logits, torch.zeros(1, 2, 2), targets, (2, 2, 2)), 2 * torch.log(torch.tensor(2.0)))


def test_supervised_policy_finds_planted_keys_that_the_untrained_one_misses():
    video, keys = planted_world(32, seed=0)
    t, h, w = GRID
    targets = torch.zeros(len(video), t * h * w, dtype=torch.bool)
    targets[torch.arange(len(video))[:, None], keys] = True
    policy = CompressionPolicy.from_llm(qwen2_llm(), seed=0)
    held_out = planted_world(64, seed=1)
    before = top_k_recovers_keys(policy, *held_out)
    history = train_supervised_policy(policy, inputs_for(video), lambda idx: targets[torch.as_tensor(idx)], len(video),
                                      steps=150, items_per_step=4, lr=5e-3, seed=0, progress=False)
    assert before < 0.1
    assert top_k_recovers_keys(policy, *held_out) >= 0.9
    assert np.mean([h["loss"] for h in history[-10:]]) < np.mean([h["loss"] for h in history[:10]]) / 2


def test_world_targets_are_the_ground_truth_and_an_unknown_target_is_refused(test_split):
    from cacovid_lib.data.schema import asked_objects
    from cacovid_lib.stages.policy_upper_bound import world_targets

    labels = test_split.object_labels[test_split.video_of_item].reshape(len(test_split), -1)
    asked, objects = world_targets(test_split, "asked"), world_targets(test_split, "objects")
    assert asked.shape == objects.shape == labels.shape and not (asked & ~objects).any()  # asked tokens are object tokens
    assert np.array_equal(objects, labels >= 0)
    for row, mask, item in zip(labels, asked, test_split.items):
        assert set(row[mask].tolist()) == set(asked_objects(item)) & set(row.tolist())
    with pytest.raises(ValueError, match="valid: asked, objects"):
        world_targets(test_split, "clutter")


def test_selection_table_scores_every_policy_and_ratio_with_coverage(tiny_vlm, test_split, embeds):
    from cacovid_lib.stages.policy_upper_bound import selection_table

    policy = CompressionPolicy.from_llm(tiny_vlm.language_model, seed=0).eval()
    rules = {"release": RELEASE_RULE, "no cap": SelectionRule(imp_ratio=1.0, cap_multiple=None)}
    table = selection_table(tiny_vlm, {"a": policy}, test_split, embeds, [0.25, 0.1], rules)
    assert table[["policy", "rule", "retention"]].values.tolist() == [["a", "release", 0.25], ["a", "release", 0.1],
                                                                      ["a", "no cap", 0.25], ["a", "no cap", 0.1]]
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()
    assert table["asked_objects_kept"].between(0, 1).all() and (table["objects_covered"] >= 0).all()
