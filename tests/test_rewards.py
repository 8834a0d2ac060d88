"""Rewards: Video-R1's per-type accuracy rewards, and the frozen LLM's batched multiple-choice rewards."""
import numpy as np
import pytest
import torch

from cacovid_lib.embedded.split import load_split
from cacovid_lib.models.rewards import (
    accuracy_reward, generation_rewards, multiple_choice_rewards, rouge_score, word_error_rate
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


def test_generation_rewards_decode_the_configured_length():
    from cacovid_lib.models.rewards import KIT_MAX_NEW_TOKENS, RELEASE_MAX_NEW_TOKENS

    answer = "<answer>the red circle moves to the left</answer>"

    class Words:  # a stand-in video LLM that answers one word per new token
        asked: list = []

        def generate(self, items, video, keeps, max_new_tokens):
            self.asked.append(max_new_tokens)
            return [" ".join(answer.split()[:max_new_tokens])] * len(items)

    items = [{"problem_type": "free-form", "solution": answer}]
    masks = torch.ones(1, 2, 4, dtype=torch.bool)
    vlm = Words()
    short = generation_rewards(vlm, items, torch.zeros(1, 5, 3), masks, max_new_tokens=3)
    full = generation_rewards(vlm, items, torch.zeros(1, 5, 3), masks, max_new_tokens=RELEASE_MAX_NEW_TOKENS)
    assert vlm.asked == [3, RELEASE_MAX_NEW_TOKENS] and KIT_MAX_NEW_TOKENS == 8
    assert torch.all(full == 1.0) and torch.all(short < 1.0)  # a truncated free-form answer loses reward
