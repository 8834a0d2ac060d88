"""Blind filtering (docs/method.md §4): drop the training items the frozen video LLM answers correctly with no video
at all; they carry no signal about which tokens matter.

Two entry points, one rule:
- `blind_filter`: the embedded world's split (option-likelihood answers), the filter_blind stage (notebook 05-filter-blind).
- `blind_filter_video_r1`: a real video LLM (LLaVA-OneVision or Qwen2.5-VL) on a Video-R1 style JSON, the step that
  makes a file like the release's `Video-R1-llava_onevision_filtered.json` from Video-R1-260k for the model being
  trained. Its video items (the policy trains on videos only, as the release) are answered in batches with the
  reward the policy will train with (policy.reward: "generation" = models/rewards.accuracy_reward of the greedy
  answer, the release's first-character rule for multiple choice, "multiple_choice" = option-likelihood), and the item is dropped when that reward reaches `correct_at`. One JSON
  line per item (its reward) is appended to `<out>.blind.jsonl` as it is computed, so a killed run resumes where it
  stopped; the filtered JSON is written atomically at the end. From the command line:

    python -m cacovid_lib.cli.blind_filter --params paper/params.yaml --model llava_onevision_7b \\
        --video-r1 /path/to/Video-R1-260k.json --media-root /path/to/Video-R1-data \\
        --out /path/to/Video-R1-llava_onevision_filtered.json

"No video" for a real model: every video token is dropped (an all-false keep mask), so the LLM sees the prompt and
the token that closes the video (LLaVA-OneVision's newline, Qwen2.5-VL's <|vision_end|>), never frames. No video is
decoded: the closing token comes from encoding one black video once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cacovid_lib.compare.evaluation import predict
from cacovid_lib.compare.keep import keep_none
from cacovid_lib.io_utils import KitInputError, append_jsonl, read_jsonl_records, run_cli
from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.rewards import KIT_MAX_NEW_TOKENS
from cacovid_lib.stages.policy_training import VideoR1Task


def blind_filter(vlm: VideoLLM, split, batch_size: int = 64) -> list[dict]:
    """The embedded world's items the model does *not* answer correctly without the video."""
    preds, _ = predict(vlm, split, keep_none, batch_size, desc="blind filter")
    return [item for item, p, a in zip(split.items, preds, split.answers) if p != a]


def blind_filter_metrics(num_train: int, num_kept: int) -> dict:
    """blind_filter.json: the training questions, those kept, and the share dropped (answered without the video)."""
    return {"num_train": num_train, "num_kept": num_kept, "share_dropped": round(1 - num_kept / num_train, 4)}


class BlindVideoR1Task(VideoR1Task):
    """VideoR1Task whose every item shows no video: the rewards of all-false keep masks need no frames, so the
    video embeddings are one black video's (encoded once), whose video tokens the masks drop."""

    def __init__(self, vlm, items: list[dict], reward: str = "generation", max_new_tokens: int = KIT_MAX_NEW_TOKENS):
        super().__init__(vlm, items, reward, max_new_tokens)
        black = np.zeros((vlm.num_frames, 64, 64, 3), dtype=np.uint8)  # (t, H, W, 3); preprocess resizes it
        with torch.no_grad():
            self.blank = vlm.encode_video(vlm.preprocess(black)[None])  # (1, N+1, D)

    def item_video_embeds(self, idx) -> torch.Tensor:
        return self.blank.expand(len(idx), -1, -1)  # (B, N+1, D)


@torch.no_grad()
def blind_rewards(vlm, items: list[dict], out_file, reward: str = "generation", batch_size: int = 8,
                  progress: bool = True, max_new_tokens: int = KIT_MAX_NEW_TOKENS) -> np.ndarray:
    """The reward of each item's answer without the video, (len(items),), computed batch by batch and appended to the
    JSON-lines file `out_file` (resumable: items already there are not recomputed; a file of another model or
    reward is a one-line error). `vlm.prompt_template` must be set (models.loader.chat_template)."""
    if batch_size < 1:
        raise KitInputError(f"batch_size: {batch_size}, expected at least 1")
    task = BlindVideoR1Task(vlm, items, reward=reward, max_new_tokens=max_new_tokens)
    run = {"reward": reward, "model": str(getattr(vlm.model, "name_or_path", ""))}
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    done = read_jsonl_records(out_file, "index", run)
    other = next((r for i, r in done.items() if int(i) >= len(items) or r["problem_id"] != items[int(i)].get("problem_id")), None)
    if other is not None:
        raise KitInputError(f"{out_file}: holds another item list (item {other['index']} is problem {other['problem_id']!r}); "
                            "choose another output file")
    todo = [i for i in range(len(items)) if str(i) not in done]
    no_video = torch.zeros(1, 1, vlm.num_video_tokens, dtype=torch.bool)  # one all-false keep mask per item
    with tqdm(total=len(items), initial=len(items) - len(todo), desc="blind filter", disable=not progress, mininterval=5) as bar:
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            rewards = task.reward_fn(idx, None, no_video.expand(len(idx), -1, -1))[:, 0]  # (B,)
            records = [{"index": i, "problem_id": items[i].get("problem_id"), **run, "blind_reward": float(r)}
                       for i, r in zip(idx, rewards.tolist())]
            append_jsonl(out_file, records)
            done.update((str(r["index"]), r) for r in records)
            bar.update(len(idx))
    return np.array([done[str(i)]["blind_reward"] for i in range(len(items))])


def blind_filter_video_r1(model_dir, json_file, media_root, out_file, num_frames: int, reward: str = "generation",
                          correct_at: float = 1.0, batch_size: int = 8, limit: int | None = None, dtype="float32",
                          attn_implementation: str = "sdpa", frame_size=None, device=None, progress: bool = True,
                          max_new_tokens: int = KIT_MAX_NEW_TOKENS) -> dict:
    """Blind-filter the video items of a Video-R1 style JSON for the model in `model_dir`: keep the items whose
    no-video reward is below `correct_at` and write them to `out_file` in the schema they were read in
    (video_r1.write_filtered); the per-item rewards stay in `<out_file>.blind.jsonl`. Returns a summary."""
    from cacovid_lib.data.video_r1 import load_video_r1, write_filtered
    from cacovid_lib.models.loader import chat_template, load_video_llm

    if not 0 < correct_at <= 1:
        raise KitInputError(f"correct_at: {correct_at}, expected a reward in (0, 1]")
    if batch_size < 1:  # checked again by blind_rewards, but here before the model is loaded
        raise KitInputError(f"batch_size: {batch_size}, expected at least 1")
    problem_types = ("multiple choice",) if reward == "multiple_choice" else None
    items = load_video_r1(json_file, media_root, data_types=("video",), problem_types=problem_types, limit=limit)
    if not items:
        raise KitInputError(f"{json_file}: no video items{' of type multiple choice' if problem_types else ''} to filter")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    vlm = load_video_llm(model_dir, num_frames, device=device, dtype=dtype, attn_implementation=attn_implementation,
                         frame_size=frame_size)
    vlm.prompt_template = chat_template(vlm)
    out_file = Path(out_file)
    rewards = blind_rewards(vlm, items, out_file.with_suffix(".blind.jsonl"), reward, batch_size, progress, max_new_tokens)
    kept = write_filtered([it for it, r in zip(items, rewards) if r < correct_at], out_file)
    return {"items": len(items), "kept": kept, "dropped": len(items) - kept, "mean_blind_reward": float(rewards.mean()),
            "reward": reward, "correct_at": correct_at, "out": str(out_file)}


# ---- command line --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="local model folder, or a key of the params file's models")
    p.add_argument("--params", help="a GPU-profile params file (paper/params.yaml): model entries, num_frames, "
                                    "policy.reward and the blind_filter block as defaults")
    p.add_argument("--video-r1", help="the Video-R1 style JSON to filter (default: blind_filter.json of the params file)")
    p.add_argument("--media-root", help="the folder its media paths are relative to (default: policy.video_r1.media_root)")
    p.add_argument("--out", help="filtered JSON (default: blind_filter.out of the params file)")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--reward", choices=("generation", "multiple_choice"))
    p.add_argument("--correct-at", type=float, help="drop an item whose no-video reward is at least this (default 1)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dtype", help="float32, bfloat16, float16")
    p.add_argument("--limit", type=int, help="only the first N video items (smoke runs)")
    return p


def _given(value, default):
    """A flag's value, or `default` when the flag was not given: only None means "not given", so an explicit 0 or
    empty value reaches the checks instead of silently becoming the default."""
    return default if value is None else value


def main(argv=None) -> int:
    from cacovid_lib.pipeline.params import read_params

    args = _parser().parse_args(argv)

    def body() -> int:
        params = read_params(args.params) if args.params is not None else {}
        block, policy = params.get("blind_filter", {}), params.get("policy", {})
        entry = params.get("models", {}).get(args.model, {"path": args.model})
        json_file = _given(args.video_r1, block.get("json"))
        media_root = _given(args.media_root, policy.get("video_r1", {}).get("media_root"))
        out = _given(args.out, block.get("out"))
        for flag, value in (("--video-r1", json_file), ("--media-root", media_root), ("--out", out)):
            if value is None:
                raise KitInputError(f"{flag}: required (or its entry in --params)")
        num_frames = _given(args.num_frames, params.get("num_frames"))
        if num_frames is None:
            raise KitInputError("--num-frames: required (or num_frames in --params)")
        batch_size = _given(args.batch_size, block.get("batch_size", 8))
        for flag, value in (("--num-frames", num_frames), ("--batch-size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise KitInputError(f"{flag}: {value!r}, expected a whole number of at least 1")
        frame_size = entry.get("frame_size")
        summary = blind_filter_video_r1(
            entry["path"], json_file, media_root, out, num_frames,
            reward=_given(args.reward, policy.get("reward", "generation")),
            correct_at=_given(args.correct_at, block.get("correct_at", 1.0)), batch_size=batch_size,
            limit=args.limit, dtype=_given(args.dtype, entry.get("dtype", "float32")),
            attn_implementation=entry.get("attn_implementation", "sdpa"),
            frame_size=tuple(frame_size) if frame_size is not None else None,
            max_new_tokens=policy.get("train", {}).get("reward_max_new_tokens", KIT_MAX_NEW_TOKENS))  # the policy's reward
        print(f"kept {summary['kept']} of {summary['items']} video items ({summary['dropped']} answered without the video, "
              f"mean blind reward {summary['mean_blind_reward']:.3f}); written to {summary['out']}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
