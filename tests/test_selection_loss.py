"""Where the selection rule loses the asked object (compare/selection_loss.py): each step named on constructed scores."""
import numpy as np
import torch

from cacovid_lib.compare.selection_loss import STEPS, loss_step
from cacovid_lib.method.selection import SelectionRule

GRID = (4, 2, 2)  # 4 frames of 4 tokens: at retention 0.25, 4 tokens; with imp_ratio 1.0 all four are top tokens
RULE = SelectionRule(imp_ratio=1.0)  # cap int(1.0 * 4 * 1.5 * 0.25) = 1 top token per frame


def labels_with(object_at: dict[int, int]) -> np.ndarray:
    labels = -np.ones(16, dtype=int)
    for position, obj in object_at.items():
        labels[position] = obj
    return labels


def test_an_object_ranked_first_in_its_frame_is_kept_by_the_top_tokens():
    tokens = torch.zeros(16)
    tokens[5] = 3.0  # frame 1, its best token
    assert loss_step(torch.zeros(4), tokens, labels_with({5: 7}), [7], GRID, 0.25, RULE) == STEPS[0]


def test_an_object_second_in_its_frame_is_lost_at_the_per_frame_cap_and_kept_without_it():
    tokens = torch.zeros(16)
    tokens[4], tokens[5] = 3.0, 2.0  # frame 1: the object is second; the cap of one top token per frame takes the first
    labels = labels_with({5: 7})
    step = loss_step(torch.zeros(4), tokens, labels, [7], GRID, 0.25, RULE)
    assert step in (STEPS[1], STEPS[3])  # lost at the cap unless the even fill happens to pick it
    frame_heavy = SelectionRule(imp_ratio=1.0, cap_multiple=None, frame_floor=0.0, frame_sharpness=10.0)
    assert loss_step(torch.tensor([0.0, 5.0, 0.0, 0.0]), tokens, labels, [7], GRID, 0.25, frame_heavy) == STEPS[0]


def test_an_object_in_a_frame_without_budget_is_lost_at_the_frame_allocation():
    tokens = torch.zeros(16)
    tokens[0] = tokens[4] = tokens[8] = tokens[12] = -1.0  # every frame's best token is elsewhere
    tokens[13] = 3.0  # frame 3: the object is its best token
    rule = SelectionRule(imp_ratio=1.0, cap_multiple=None, frame_floor=0.0, frame_sharpness=10.0)
    frames = torch.tensor([5.0, 0.0, 0.0, -5.0])  # the whole budget goes to frame 0
    step = loss_step(frames, tokens, labels_with({13: 7}), [7], GRID, 0.25, rule)
    assert step == STEPS[2]


def test_an_object_ranked_last_everywhere_is_lost_at_the_ranking_and_a_question_without_it_on_screen_is_skipped():
    tokens = torch.arange(16, dtype=torch.float32).flip(0)  # the last token of each frame ranks last in its frame
    tokens[15] = -10.0
    labels = labels_with({15: 7})  # at 12.5%: 2 top tokens in all, and the object needs 4 in its frame
    assert loss_step(torch.zeros(4), tokens, labels, [7], GRID, 0.125, RULE) == STEPS[4]
    global_rule = SelectionRule(imp_ratio=1.0, allocation="global")
    assert loss_step(torch.zeros(4), tokens, labels, [7], GRID, 0.125, global_rule) == STEPS[4]
    assert loss_step(torch.zeros(4), tokens, labels, [3], GRID, 0.25, RULE) is None
