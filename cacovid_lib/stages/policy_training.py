"""Connects the model-agnostic policy loop to a video LLM and its training items: the embedded world's split with
cached video tokens (PolicyTask) or Video-R1 items streamed batch by batch (VideoR1Task), the loop's `inputs_fn`
and `reward_fn`; the training entry points for the world and for Video-R1, and the training figure. (The trained
policy as a keep rule is compare/cacovid.py's policy_keep_rule.)"""
from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacovid_lib.data.schema import asked_token_mask
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, PolicyInputs
from cacovid_lib.models.base import VideoLLM, encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.models.rewards import KIT_MAX_NEW_TOKENS, generation_rewards, multiple_choice_rewards


class PolicyTask:
    """The frozen video LLM on one split, seen by the policy loop."""

    asked: torch.Tensor | None = None  # (num_items, N) bool, the asked objects' tokens (embedded world only)

    def __init__(self, vlm: VideoLLM, split, video_embeds: torch.Tensor | None = None, reward: str = "multiple_choice",
                 max_new_tokens: int = KIT_MAX_NEW_TOKENS):
        if reward not in ("multiple_choice", "generation"):
            raise ValueError(f"reward: {reward!r}, expected 'multiple_choice' or 'generation'")
        self.vlm, self.split, self.reward = vlm, split, reward
        self.max_new_tokens = max_new_tokens  # the generation reward's answer length (PolicyTrainConfig.reward_max_new_tokens)
        self.items, self.answers = split.items, split.answers
        self.video_embeds = encode_videos(vlm, split.frames) if video_embeds is None else video_embeds  # (V, N+1, D)
        self.prompts = [vlm.prompt(item) for item in split.items]
        # the embedded world's ground truth: which tokens show each question's asked objects (N,) -> rollout_log
        self.asked = None if split.object_labels is None else torch.from_numpy(np.stack(
            [asked_token_mask(split.object_labels[v].reshape(-1), item) for v, item in zip(split.video_of_item, split.items)]))
        self.rollout_log: list[dict] = []  # one row per reward_fn call (= per training step), see rollout_stats

    def item_video_embeds(self, idx) -> torch.Tensor:
        return self.video_embeds[self.split.video_of_item[np.asarray(idx)]]  # (B, N+1, D)

    def inputs_fn(self, idx) -> PolicyInputs:
        return self.vlm.policy_inputs([self.prompts[i] for i in idx], self.item_video_embeds(idx))

    def reward_fn(self, idx, inputs: PolicyInputs, masks: torch.Tensor) -> torch.Tensor:
        """masks (B, G, N) -> rewards (B, G) from the frozen LLM, batched over every mask of every item."""
        items = [self.items[i] for i in idx]
        if self.reward == "generation":
            rewards = generation_rewards(self.vlm, items, self.item_video_embeds(idx), masks, self.max_new_tokens)
        else:
            rewards = multiple_choice_rewards(self.vlm, items, self.answers[np.asarray(idx)], self.item_video_embeds(idx), masks)
        if self.asked is not None:
            self.rollout_log.append(rollout_stats(masks, self.asked[torch.as_tensor(idx)], rewards.float().cpu()))
        return rewards


def rollout_stats(masks: torch.Tensor, asked: torch.Tensor, rewards: torch.Tensor) -> dict:
    """Is the reward signal there? Of one step's rollouts (every mode) masks (B, G, N) bool, with the asked objects'
    tokens asked (B, N) bool and rewards (B, G): the share of rollouts that keep a token of an asked object, and the
    mean reward of the rollouts that do and of those that do not (NaN where there are none). Computed on the CPU
    whatever device the masks are on (the loop's masks stay on the accelerator; asked and rewards are CPU tensors)."""
    masks, asked, rewards = masks.cpu(), asked.cpu(), rewards.cpu()  # no-ops (the same tensors) on the CPU
    hit = (masks & asked[:, None, :]).any(-1)  # (B, G)
    mean = lambda r: float(r.mean()) if r.numel() else math.nan  # noqa: E731
    return {"asked_in_rollouts": float(hit.float().mean()), "reward_with_asked": mean(rewards[hit]),
            "reward_without_asked": mean(rewards[~hit])}


class VideoR1Task(PolicyTask):
    """The frozen video LLM on Video-R1 items (video_r1.load_video_r1), streamed: an item batch's videos are
    decoded (video_r1.read_media, uniform `num_frames`) and encoded when the batch comes up, and kept only while
    the loop trains on it (its num_iter_for_item iterations). PolicyTask instead decodes and encodes every video up
    front, which real data cannot afford: LLaVA-OneVision-7B at 32 frames gives 6,273 x 3,584 values per video,
    45 MB in bfloat16, so terabytes for Video-R1's videos. The price is one decode + vision forward per item batch
    (small next to the G rollouts' LLM forwards of each of its iterations).

    Prompts: the model's chat template (`vlm.prompt_template`, set by the caller) around
    video_r1.policy_question(item). The policy trains in float32 (see _train_and_save), so its inputs are
    handed over in float32 whatever the LLM's dtype; under accelerate's bf16 mixed precision it computes in bf16.

    Robust to real data, so that no process crashes nor stalls the others: a video shorter than num_frames is read
    with repeated frames (video_io.read_video(allow_short=True), as the release samples what a short clip has) and
    counted in `short`; an unreadable one is counted in `unreadable` and replaced, for good, by the next readable
    item after it (index order, wrapping). The loop's batches keep their size, so every process makes the same
    forwards, backwards and all-reduces; everything the loop passes an item index to (inputs, rewards, video
    tokens) sees the replacement. A readable, long enough video is read exactly as by video_r1.read_media."""

    def __init__(self, vlm, items: list[dict], reward: str = "generation", max_new_tokens: int = KIT_MAX_NEW_TOKENS):
        from cacovid_lib.data.schema import OPTION_LETTERS, answer_letter  # A..Z: a Video-R1 item may have many options
        from cacovid_lib.data.video_r1 import policy_question

        if reward not in ("multiple_choice", "generation"):
            raise ValueError(f"reward: {reward!r}, expected 'multiple_choice' or 'generation'")
        def scorable(it):  # option-text scoring needs options and a one-letter answer among them
            letter = answer_letter(it)
            return it["problem_type"] == "multiple choice" and len(letter) == 1 and letter in OPTION_LETTERS[:len(it.get("options") or [])]

        if reward == "multiple_choice":
            bad = [it for it in items if not scorable(it)]
            if bad:
                raise KitInputError(f"item {bad[0].get('problem_id', '?')}: reward multiple_choice needs multiple-choice items "
                                    "with options and a letter answer; use reward generation")
        self.vlm, self.reward, self.max_new_tokens = vlm, reward, max_new_tokens
        self.items = [dict(item, problem=policy_question(item)) for item in items]
        self.answers = np.array([OPTION_LETTERS.index(answer_letter(it)) if scorable(it) else -1 for it in items])  # -1: no option
        self.prompts = [vlm.prompt(item) for item in self.items]
        self._batch: tuple[tuple[int, ...], torch.Tensor] | None = None  # (item indices, their video embeds (B, N+1, D))
        self.short: set[int] = set()  # items read with repeated frames
        self.unreadable: set[int] = set()
        self._replacement: dict[int, int] = {}  # unreadable item -> the item that stands in for it
        self._readable: set[int] = set()
        self._frames: dict[int, np.ndarray] = {}  # frames read while resolving, until the batch is encoded

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, i: int) -> np.ndarray:
        """Item i's frames (t, H, W, 3): video_r1.read_media, or for a short video read_video(allow_short=True)."""
        from cacovid_lib.data.video_io import read_video
        from cacovid_lib.data.video_r1 import read_media

        if i in self.short:
            return read_video(self.items[i]["media_path"], self.vlm.num_frames, allow_short=True)
        try:
            return read_media(self.items[i], self.vlm.num_frames)
        except KitInputError:
            frames = read_video(self.items[i]["media_path"], self.vlm.num_frames, allow_short=True)
            self.short.add(i)
            return frames

    def _try_read(self, i: int) -> bool:
        try:
            self._frames[i] = self._read(i)  # (t, H, W, 3)
        except KitInputError as err:
            print(f"video-r1: skipping item {self.items[i].get('problem_id', i)}: {err}", file=sys.stderr)
            self.unreadable.add(i)
            return False
        self._readable.add(i)
        return True

    def resolve(self, idx) -> np.ndarray:
        """Item indices with every unreadable item replaced by its stand-in: (B,) -> (B,). Reads the videos of items
        not read yet (their frames are kept until item_video_embeds encodes them)."""
        out = []
        for i in (int(i) for i in idx):
            if i not in self._readable and i not in self._replacement:
                j = i
                while not (j in self._readable or (j not in self.unreadable and self._try_read(j))):
                    j = (j + 1) % len(self.items)
                    if j == i:
                        raise KitInputError("video-r1: no item has a readable video")
                if j != i:
                    self._replacement[i] = j
            out.append(self._replacement.get(i, i))
        return np.array(out)

    def _stand_ins(self, idx) -> np.ndarray:
        """idx with the replacements that item_video_embeds(idx) finds (a subclass with its own video embeddings,
        which reads no video, finds none): (B,) -> (B,)."""
        self.item_video_embeds(idx)  # the batch's embeddings, cached for the calls with the replaced indices
        return np.array([self._replacement.get(int(i), int(i)) for i in idx])

    @torch.no_grad()
    def item_video_embeds(self, idx) -> torch.Tensor:
        key = tuple(int(i) for i in self.resolve(idx))
        if self._batch is None or self._batch[0] != key:
            frames = [self._frames.pop(i) if i in self._frames else self._read(i) for i in key]  # read in an earlier batch
            pixels = torch.stack([self.vlm.preprocess(f) for f in frames])
            self._batch = (key, self.vlm.encode_video(pixels))  # (B, N+1, D)
        return self._batch[1]

    def inputs_fn(self, idx) -> PolicyInputs:
        inputs = super().inputs_fn(self._stand_ins(idx))
        return replace(inputs, embeds=inputs.embeds.float(), raw_video=inputs.raw_video.float())

    def reward_fn(self, idx, inputs: PolicyInputs, masks: torch.Tensor) -> torch.Tensor:
        return super().reward_fn(self._stand_ins(idx), inputs, masks)


def train_policy_on_split(model_dir, world_dir, num_frames: int, cfg, out_dir, items_file=None, reward: str = "multiple_choice",
                          accelerator=None, resume: bool = False, progress: bool = True, health_log: bool = False):
    """Load the frozen video LLM, train a fresh policy on the (blind-filtered) train split, save it to `out_dir`.
    The notebook stage and `accelerate launch -m cacovid_lib.cli.launch_policy_training` both call this.
    With `resume`, training continues from the last checkpoint in `out_dir`; `health_log`: see _train_and_save.
    Returns (policy, TrainerState)."""
    from accelerate import Accelerator

    from cacovid_lib.embedded.split import load_split

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=num_frames, device=accelerator.device)
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    split = load_split(world_dir, "train", num_frames, items_file=items_file)
    task = PolicyTask(vlm, split, reward=reward, max_new_tokens=cfg.reward_max_new_tokens)
    policy, state = _train_and_save(vlm, task, len(split), model_dir, cfg, out_dir, accelerator, resume, progress,
                                    health_log)
    join_rollout_log(state.history, task.rollout_log)
    return policy, state


def join_rollout_log(history: list[dict], rollout_log: list[dict]) -> list[dict]:
    """Add each step's rollout_stats (PolicyTask.rollout_log, one row per reward call = per step) to the last rows of
    the loop's history (a resumed run logged only the steps after the resume), in place; returns `history`."""
    for row, stats in zip(history[len(history) - len(rollout_log):], rollout_log):
        row.update(stats)
    return history


def epoch_steps(num_items: int, cfg, num_processes: int, epochs: float = 1.0) -> int:
    """Optimiser steps of `epochs` passes over `num_items` (method.train_loop.item_batches' batches x num_iter_for_item)."""
    batches = num_items // (cfg.items_per_step * num_processes)
    if batches == 0:
        raise KitInputError(f"items: {num_items} items are fewer than one batch ({cfg.items_per_step} per step x "
                            f"{num_processes} processes)")
    return max(1, int(batches * epochs)) * cfg.num_iter_for_item


def train_policy_on_video_r1(model_dir, json_file, media_root, num_frames: int, cfg, out_dir, reward: str = "generation",
                             epochs: float | None = None, limit: int | None = None, dtype="float32",
                             attn_implementation: str = "sdpa", frame_size=None, accelerator=None, resume: bool = False,
                             progress: bool = True, health_log: bool = False):
    """Train a fresh policy for a real video LLM (LLaVA-OneVision or Qwen2.5-VL, models.loader.load_video_llm) on
    the video items of a Video-R1 style JSON (as the release: videos only; with reward "multiple_choice" only its
    multiple-choice items), streaming the videos (VideoR1Task), and save it to `out_dir`.
    `epochs`: set the step count to that many passes over the items (the release trains one epoch); None keeps
    cfg.steps. Blind filtering is the caller's: pass a filtered JSON (e.g. the release's
    Video-R1-llava_onevision_filtered.json). `health_log`: see _train_and_save. After training, the short and
    unreadable videos of all processes (VideoR1Task), summed, go to stderr. Returns (policy, TrainerState)."""
    from accelerate import Accelerator

    from cacovid_lib.data.video_r1 import load_video_r1
    from cacovid_lib.models.loader import chat_template, load_video_llm

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    vlm = load_video_llm(model_dir, num_frames, device=accelerator.device, dtype=dtype,
                         attn_implementation=attn_implementation, frame_size=frame_size)
    vlm.prompt_template = chat_template(vlm)
    problem_types = ("multiple choice",) if reward == "multiple_choice" else None
    items = load_video_r1(json_file, media_root, data_types=("video",), problem_types=problem_types, limit=limit)
    if not items:
        raise KitInputError(f"{json_file}: no video items{' of type multiple choice' if problem_types else ''} to train on")
    if epochs is not None:
        cfg = replace(cfg, steps=epoch_steps(len(items), cfg, accelerator.num_processes, epochs))
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    task = VideoR1Task(vlm, items, reward=reward, max_new_tokens=cfg.reward_max_new_tokens)
    policy, state = _train_and_save(vlm, task, len(items), model_dir, cfg, out_dir, accelerator, resume, progress,
                                    health_log)
    # one all-reduce on every process, after the loop: the totals over processes
    counts = accelerator.reduce(torch.tensor([len(task.short), len(task.unreadable)], device=accelerator.device), "sum")
    short, unreadable = (int(c) for c in counts)
    if accelerator.is_main_process:
        print(f"video-r1: {short} short videos read with repeated frames, {unreadable} unreadable videos skipped "
              f"(each replaced by its process's next readable item)", file=sys.stderr)
    return policy, state


HEALTH_CSV, HEALTH_PNG, HISTORY = "training_health.csv", "training_health.png", "training_history.pt"


class HealthLog:
    """The per-step health CSV (HEALTH_CSV) in the policy folder, appended by the main process after every step
    (the loop's history row plus seconds_per_step); the figure (HEALTH_PNG, policy_training_figure) at the end.
    A resumed run first drops the rows at or after its checkpoint's step (logged by the killed run after its last
    checkpoint, and about to be redone), then appends."""

    def __init__(self, out_dir, start_step: int, main_process: bool):
        self.path, self.main = Path(out_dir) / HEALTH_CSV, main_process
        self.fields: list[str] | None = None
        self.last = time.perf_counter()
        if not self.main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if start_step and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                rows = [r for r in reader if int(r["step"]) < start_step]
        with self.path.open("w", newline="") as f:
            if self.fields:
                writer = csv.DictWriter(f, self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def __call__(self, record: dict) -> None:
        now = time.perf_counter()
        row = dict(record, seconds_per_step=now - self.last)
        self.last = now
        if not self.main:
            return
        new = self.fields is None
        self.fields = self.fields or list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def figure(self) -> None:
        import matplotlib

        matplotlib.use("Agg")  # a training node has no display
        import matplotlib.pyplot as plt

        if self.main and self.path.is_file():
            history = pd.read_csv(self.path)
            if len(history):
                fig = policy_training_figure(history, window=max(1, min(25, math.ceil(len(history) / 10))))
                fig.savefig(self.path.with_name(HEALTH_PNG), dpi=110)
                plt.close(fig)


def _train_and_save(vlm, task, num_items: int, model_dir, cfg, out_dir, accelerator, resume: bool, progress: bool,
                    health_log: bool = False):
    """The policy loop on `task` (resumable from `out_dir`), then the policy alone saved to `out_dir`.
    The policy's weights are float32 whatever the LLM's dtype (a no-op for the float32 embedded model): AdamW steps
    at the release's learning rate (1e-6) are below bfloat16's resolution and would be lost.
    `health_log` (the launcher's runs): the main process also appends HEALTH_CSV per step (HealthLog), writes
    HEALTH_PNG at the end, and moves the trainer state aside to HISTORY (the whole history, sample rates, the last
    checkpoint's optimizer state, None without one) instead of deleting it, so the run's record stays while a
    resume starts afresh. Same policy, same steps: the log only reads each step's history row. Without it (the
    notebook stage, which plots its own health) the folder holds the policy only."""
    from dataclasses import asdict

    from cacovid_lib.method.policy import load_policy, save_policy
    from cacovid_lib.method.train_loop import load_trainer_state, save_training_checkpoint, train_policy

    llm = vlm.language_model
    resumed = load_trainer_state(out_dir) if resume else None
    policy = load_policy(out_dir, llm, dtype=torch.float32) if resumed else CompressionPolicy.from_llm(llm, seed=cfg.seed).float()
    state, optimizer_state = resumed or (None, None)
    last_optimizer_state = [optimizer_state]

    def checkpoint(model, st, opt_state):
        last_optimizer_state[0] = opt_state
        if accelerator.is_main_process:
            save_training_checkpoint(out_dir, model, st, opt_state, cfg, str(model_dir))
        accelerator.wait_for_everyone()

    log = HealthLog(out_dir, state.step if state else 0, accelerator.is_main_process) if health_log else None
    state = train_policy(policy.to(accelerator.device), task.inputs_fn, task.reward_fn, num_items, cfg, accelerator, state,
                         optimizer_state, checkpoint, progress, step_fn=log)
    policy = accelerator.unwrap_model(policy)
    if accelerator.is_main_process:  # training finished: the folder holds the policy only (and the health log's files)
        save_policy(policy, out_dir, str(model_dir), {"train_config": asdict(cfg), "step": state.step})
        if log is not None:
            torch.save({"state": asdict(state), "optimizer_state": last_optimizer_state[0]}, Path(out_dir, HISTORY))
        Path(out_dir, "trainer_state.pt").unlink(missing_ok=True)  # with the health log, its content is in HISTORY
        if log is not None:
            log.figure()
    accelerator.wait_for_everyone()
    return policy, state


# panels of the policy training figure: (title, y label, history columns); a panel whose columns are all absent
# (a history from before the health columns) is left out
POLICY_TRAINING_PANELS = [
    ("reward per mode", "answer accuracy", ["reward_token", "reward_frame", "reward_content"]),
    ("policy loss", "loss", ["loss"]),
    ("groups with zero reward spread", "fraction of items", ["zero_spread_all", "zero_spread_token", "zero_spread_frame"]),
    ("token ratios clipped", "fraction of decisions", ["clip_low", "clip_high"]),
    ("policy entropy (log 2 = undecided)", "nats per decision", ["entropy_token", "entropy_frame"]),
    ("KL to the iteration-0 policy", "nats per decision", ["kl_token", "kl_frame"]),
    ("gradient norm before clipping", "norm", ["grad_norm"]),
    ("kept tokens per rollout", "tokens", ["kept_tokens"]),
    ("rollouts keeping an asked object", "share of rollouts", ["asked_in_rollouts"]),
    ("reward with / without an asked object", "answer accuracy", ["reward_with_asked", "reward_without_asked"]),
    ("sample rate and learning rate", "sample rate r", ["sample_rate"]),
]


def policy_training_figure(history: pd.DataFrame, window: int = 25):
    """The policy loop's history (train_loop.TrainerState.history as a frame, one row per step) as a grid of panels:
    rewards per mode, loss, and the training health (method/health.py). Curves are `window`-step rolling means.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    smooth = history.set_index("step").rolling(window, min_periods=1).mean()
    panels = [p for p in POLICY_TRAINING_PANELS if any(c in smooth for c in p[2])]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (title, ylabel, columns) in zip(axes.flat, panels):
        present = [c for c in columns if c in smooth]
        smooth[present].plot(ax=ax, legend=len(present) > 1)
        ax.set_title(f"{title} ({window}-step mean)", fontsize=9)
        ax.set_ylabel(ylabel)
        if title.startswith("policy entropy"):
            ax.axhline(math.log(2), color="grey", lw=0.8, ls=":")
        if "lr" in smooth and title.startswith("sample rate"):  # the learning rate on its own axis
            twin = ax.twinx()
            smooth["lr"].plot(ax=twin, color="grey", ls=":")
            twin.set_ylabel("learning rate")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
