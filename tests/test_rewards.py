"""Rewards: the release's multiple-choice rule and Video-R1's other per-type accuracy rewards, the frozen LLM's
batched multiple-choice rewards, and the generation reward's decoding."""
import numpy as np
import pytest
import torch

from cacovid_lib.embedded.split import load_split
from cacovid_lib.models import rewards as rewards_module
from cacovid_lib.models.rewards import (
    ANSWER_CLOSE, accuracy_reward, generation_rewards, multiple_choice_match, multiple_choice_rewards, rouge_score,
    word_error_rate
)


def test_video_r1_accuracy_rewards_per_problem_type():
    assert accuracy_reward("multiple choice", "<answer>B</answer>", "<answer>B</answer>") == 1.0
    assert accuracy_reward("multiple choice", "<think>..</think><answer>C</answer>", "<answer>B</answer>") == 0.0
    assert accuracy_reward("numerical", "<answer>3.50</answer>", "<answer>3.5</answer>") == 1.0
    assert accuracy_reward("numerical", "<answer>3</answer>", "<answer>3.0</answer>") == 0.0  # decimal point mismatch
    assert accuracy_reward("OCR", "<answer>stop here now</answer>", "<answer>stop here</answer>") == 0.5
    assert accuracy_reward("free-form", "a red circle", "<answer>a red circle</answer>") == 1.0
    assert accuracy_reward("regression", "<answer>8</answer>", "<answer>10</answer>") == pytest.approx(0.8)
    assert accuracy_reward("regression", "<answer>none</answer>", "<answer>10</answer>") == 0.0
    with pytest.raises(ValueError, match="expected one of"):
        accuracy_reward("essay", "a", "b")


@pytest.mark.parametrize("output", ["B", "B.", " B. a red cube", "<answer>B</answer>", "<answer> B. </answer>",
                                    "<think>it is blue</think><answer>B</answer>", "B) blue", ".B", "B\n<answer>C</answer>"])
@pytest.mark.parametrize("solution", ["B", "<answer>B</answer>", "<answer> B. </answer>"])
def test_release_multiple_choice_rule_compares_first_characters(output, solution):
    assert multiple_choice_match(output, solution) == accuracy_reward("multiple choice", output, solution) == 1.0


@pytest.mark.parametrize("output", ["C", "<answer>C</answer>", "C. B", "", "   ", "<answer></answer>", "...", "the answer is B",
                                    "<answer>b</answer>", "b"])
def test_release_multiple_choice_rule_refuses_the_rest(output):
    # "b" is wrong: the release compares characters as they are, and docs/method.md says nothing about case
    assert accuracy_reward("multiple choice", output, "<answer>B</answer>") == 0.0


def test_release_multiple_choice_rule_on_edge_cases():
    assert multiple_choice_match("B", "") == multiple_choice_match("", "") == 0.0  # no solution: nothing matches
    assert multiple_choice_match("A. the cube", "<answer>A</answer>") == 1.0
    assert multiple_choice_match("<answer>C</answer>", "B") == 0.0  # the whole output starts with "<"


def test_wer_and_rouge_on_known_cases():
    assert word_error_rate("a b c d", "a x c") == 0.5  # one substitution, one deletion
    assert rouge_score("the red circle", "the red circle") == pytest.approx(1.0)
    assert rouge_score("the red circle", "blue square") == 0.0
    assert 0 < rouge_score("the red circle moves", "the circle") < 1


def test_multiple_choice_rewards_match_one_mask_at_a_time_scoring(tiny_world, tiny_vlm):
    split = load_split(tiny_world, "train", 8, limit=3)
    video = tiny_vlm.encode_video(torch.stack([tiny_vlm.preprocess(split.frames[v]) for v in split.video_of_item]))
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 5, tiny_vlm.num_video_tokens, generator=g) < 0.3  # (B, G, N)
    batched = multiple_choice_rewards(tiny_vlm, split.items, split.answers, video, masks, chunk=7)
    one_by_one = torch.tensor([[float(tiny_vlm.score_options(split.items[b], video[b], masks[b, j:j + 1]).argmax() == split.answers[b])
                                for j in range(5)] for b in range(3)])
    assert torch.equal(batched, one_by_one)


def test_generation_rewards_score_greedy_answers(tiny_world, tiny_vlm):
    split = load_split(tiny_world, "train", 8, limit=2)
    video = tiny_vlm.encode_video(torch.stack([tiny_vlm.preprocess(split.frames[v]) for v in split.video_of_item]))
    items = [{**it, "problem_type": "free-form", "solution": "<answer>red circle</answer>"} for it in split.items]
    masks = torch.ones(2, 3, tiny_vlm.num_video_tokens, dtype=torch.bool)
    rewards = generation_rewards(tiny_vlm, items, video, masks, max_new_tokens=3)
    assert rewards.shape == (2, 3) and ((rewards >= 0) & (rewards <= 1)).all()
    texts = tiny_vlm.generate(items, video, masks[:, 0], max_new_tokens=3)
    expected = [rouge_score("red circle", t) for t in texts]
    assert np.allclose(rewards[:, 0].numpy(), expected)


def test_generation_rewards_decode_the_configured_length_and_stop_at_the_answer(monkeypatch):
    from cacovid_lib.models.rewards import KIT_MAX_NEW_TOKENS, RELEASE_MAX_NEW_TOKENS

    answer = "<answer>the red circle moves to the left</answer>"
    asked = []

    def generate_cached(vlm, items, video, keeps, max_new_tokens, stop_ids=None, stop_text=None):
        asked.append((len(items), max_new_tokens, stop_text))  # a stand-in that answers one word per new token
        return [" ".join(answer.split()[:max_new_tokens])] * len(items)

    monkeypatch.setattr(rewards_module, "generate_cached", generate_cached)
    items = [{"problem_type": "free-form", "solution": answer}]
    masks = torch.ones(1, 2, 4, dtype=torch.bool)
    short = generation_rewards(None, items, torch.zeros(1, 5, 3), masks, max_new_tokens=3)
    full = generation_rewards(None, items, torch.zeros(1, 5, 3), masks, max_new_tokens=RELEASE_MAX_NEW_TOKENS)
    assert asked == [(2, 3, ANSWER_CLOSE), (2, RELEASE_MAX_NEW_TOKENS, ANSWER_CLOSE)] and KIT_MAX_NEW_TOKENS == 8
    assert torch.all(full == 1.0) and torch.all(short < 1.0)  # a truncated free-form answer loses reward


def test_generation_rewards_use_the_release_multiple_choice_rule(monkeypatch):
    outputs = iter(["B. a red cube", "<answer>B</answer>", "C", "", "B", "b"])
    monkeypatch.setattr(rewards_module, "generate_cached",
                        lambda vlm, items, video, keeps, max_new_tokens, stop_ids=None, stop_text=None: [next(outputs) for _ in items])
    items = [{"problem_type": "multiple choice", "solution": "<answer>B</answer>"}] * 2
    rewards = generation_rewards(None, items, torch.zeros(2, 5, 3), torch.ones(2, 3, 4, dtype=torch.bool), max_new_tokens=8)
    assert rewards.tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
