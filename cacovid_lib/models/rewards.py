"""Rewards for the policy's rollouts (docs/method.md §3, last paragraph): the frozen video LLM answers under each
keep-mask and the answer is scored. Multiple choice: option-text likelihood over all G masks of every item
in batched forwards. Free-form: batched greedy generation scored with Video-R1's per-type accuracy rewards, its
multiple-choice one replaced by the CaCoVID release's lenient first-character rule (multiple_choice_match).

The generation length is an option (PolicyTrainConfig.reward_max_new_tokens): the release decodes up to 768 new
tokens (RELEASE_MAX_NEW_TOKENS, the GPU profile's value); the kit's default of 8 (KIT_MAX_NEW_TOKENS) keeps CPU runs
short and is enough for a letter or a number, but truncates free-form and OCR answers, whose rewards then drop.
Either way a row stops as soon as its text ends with ANSWER_CLOSE (or at EOS): the reward reads only the first
<answer>...</answer>, so the tokens after it are never scored and decoding them (up to 768 per row) is wasted.
"""
from __future__ import annotations

import re

import torch

from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.generation import generate_cached

KIT_MAX_NEW_TOKENS = 8  # the kit's default generation length for the reward (CPU-sized)
RELEASE_MAX_NEW_TOKENS = 768  # the release's generation length for the reward (docs/method.md §3, last paragraph)
ANSWER_CLOSE = "</answer>"  # a rollout's answer is complete once its text ends with this


# ---- Video-R1's accuracy rewards (per problem_type), on plain strings -------------------------------
def extract_answer(text: str) -> str:
    """The text between <answer> and </answer>, or the whole text when the tags are absent."""
    match = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL)
    return (match.group(1) if match else text).strip()


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / number of reference words (jiwer's WER)."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        return float(bool(hyp))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def _ngrams(words: list[str], n: int) -> dict:
    out: dict = {}
    for i in range(len(words) - n + 1):
        out[tuple(words[i:i + n])] = out.get(tuple(words[i:i + n]), 0) + 1
    return out


def _f1(overlap: int, n_ref: int, n_hyp: int) -> float:
    if not overlap:
        return 0.0
    p, r = overlap / n_hyp, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_score(reference: str, hypothesis: str) -> float:
    """Mean F1 of ROUGE-1, ROUGE-2 and ROUGE-L on lower-cased alphanumeric words, as Video-R1 averages them
    (simplification: no Porter stemming)."""
    ref, hyp = (re.findall(r"[a-z0-9]+", s.lower()) for s in (reference, hypothesis))
    if not ref or not hyp:
        return 0.0
    scores = []
    for n in (1, 2):
        a, b = _ngrams(ref, n), _ngrams(hyp, n)
        scores.append(_f1(sum(min(c, b.get(g, 0)) for g, c in a.items()), max(sum(a.values()), 1), max(sum(b.values()), 1)))
    lcs = [[0] * (len(hyp) + 1) for _ in range(len(ref) + 1)]
    for i, r in enumerate(ref):
        for j, h in enumerate(hyp):
            lcs[i + 1][j + 1] = lcs[i][j] + 1 if r == h else max(lcs[i][j + 1], lcs[i + 1][j])
    scores.append(_f1(lcs[-1][-1], len(ref), len(hyp)))
    return sum(scores) / 3


def _first_char(text: str) -> str:
    """The first character after stripping whitespace and then periods ("" when nothing is left)."""
    return text.strip().strip(".")[:1]


def multiple_choice_match(output: str, solution: str) -> float:
    """The CaCoVID release's multiple-choice reward (docs/method.md §3): "take the text inside <answer>...</answer>
    (or the whole output when there is no such tag) for both the output and the solution, strip whitespace and then
    periods, and compare only the first character; the rollout also scores 1 when the first character of the whole
    (stripped) output matches. So "B", "B." and "B. a red cube" all score 1 against "B"."

    The comparison is of characters as they are (case-sensitive): the release's rule says nothing about case.
    An empty answer or solution scores 0."""
    gt = _first_char(extract_answer(solution))
    if not gt:
        return 0.0
    return float(_first_char(extract_answer(output)) == gt or _first_char(output) == gt)


def accuracy_reward(problem_type: str, output: str, solution: str) -> float:
    """The accuracy reward of one answer: multiple choice: the release's first-character rule (multiple_choice_match),
    1/0; Video-R1's for the rest: numerical: equal to 2 decimals (and both or neither with a decimal point); OCR:
    1 - WER; free-form: ROUGE; regression: 1 - relative error."""
    if problem_type == "multiple choice":
        return multiple_choice_match(output, solution)
    out, gt = extract_answer(output), extract_answer(solution)
    if problem_type == "numerical":
        if ("." in gt or "," in gt) != ("." in out or "," in out):
            return 0.0
        a, b = _number(gt), _number(out)
        return float(a is not None and b is not None and round(a, 2) == round(b, 2))
    if problem_type == "OCR":
        return min(1.0, max(0.0, 1 - word_error_rate(gt, out)))
    if problem_type == "free-form":
        return min(1.0, max(0.0, rouge_score(gt, out)))
    if problem_type == "regression":
        a, b = _number(gt), _number(out)
        if a is None or b is None:
            return 0.0
        return 1 - min(1.0, max(0.0, (abs(b - a) + 1e-9) / (abs(a) + 1e-9)))
    raise ValueError(f"problem_type {problem_type!r}: expected one of multiple choice, numerical, OCR, free-form, regression")


# ---- rewards of G keep-masks per item, from the frozen video LLM -------------------------------------
@torch.no_grad()
def multiple_choice_rewards(vlm: VideoLLM, items: list[dict], answers, video_embeds: torch.Tensor, masks: torch.Tensor,
                            chunk: int = 256) -> torch.Tensor:
    """1 where the option with the highest text likelihood is the correct one, for every item b and mask g.
    video_embeds (B, N+1, D), masks (B, G, N) bool, answers (B,) option indices -> rewards (B, G).
    All B·G prompts go through the LLM in batched forwards of `chunk` prompts, each prompt's options continuing
    from its cached keys and values."""
    b, g, _ = masks.shape
    prompts = [vlm.prompt(item) for item in items]
    rows = [(i, j) for i in range(b) for j in range(g)]  # one prompt per (item, mask); its options share it
    scores = torch.cat([vlm.option_logprobs([prompts[i] for i, _ in part], torch.stack([video_embeds[i] for i, _ in part]),
                                            torch.stack([masks[i, j] for i, j in part]))
                        for part in (rows[s:s + chunk] for s in range(0, len(rows), chunk))]).view(b, g, -1)  # (B, G, options)
    return (scores.argmax(-1).cpu() == torch.as_tensor(answers)[:, None]).float()


@torch.no_grad()
def generation_rewards(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, masks: torch.Tensor,
                       max_new_tokens: int = KIT_MAX_NEW_TOKENS) -> torch.Tensor:
    """accuracy_reward of the greedy answer generated under each mask, all B·G rows decoded together with a KV cache
    (generation.generate_cached, the same tokens as `vlm.generate`), each row until its text ends with ANSWER_CLOSE,
    at EOS, or after `max_new_tokens` new tokens (the release: RELEASE_MAX_NEW_TOKENS).
    video_embeds (B, N+1, D), masks (B, G, N) -> rewards (B, G)."""
    b, g, _ = masks.shape
    rows = [(i, j) for i in range(b) for j in range(g)]
    texts = generate_cached(vlm, [items[i] for i, _ in rows], torch.stack([video_embeds[i] for i, _ in rows]),
                            torch.stack([masks[i, j] for i, j in rows]), max_new_tokens, stop_text=ANSWER_CLOSE)
    rewards = [accuracy_reward(items[i]["problem_type"], text, items[i]["solution"]) for (i, _), text in zip(rows, texts)]
    return torch.tensor(rewards).view(b, g)
