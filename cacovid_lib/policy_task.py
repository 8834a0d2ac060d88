"""Connects the model-agnostic policy loop to a video LLM and a video-QA split: cached video tokens, the
loop's `inputs_fn` and `reward_fn`, and the trained policy as a keep rule for evaluation."""
from __future__ import annotations

import numpy as np
import torch

from .adapter import VideoLLM
from .efficiency import median_ms
from .evaluation import encode_split_videos
from .policy import CompressionPolicy, PolicyInputs, scores
from .rewards import generation_rewards, multiple_choice_rewards
from .selection import select_tokens


class PolicyTask:
    """The frozen video LLM on one split, seen by the policy loop."""

    def __init__(self, vlm: VideoLLM, split, video_embeds: torch.Tensor | None = None, reward: str = "multiple_choice"):
        if reward not in ("multiple_choice", "generation"):
            raise ValueError(f"reward: {reward!r}, expected 'multiple_choice' or 'generation'")
        self.vlm, self.split, self.reward = vlm, split, reward
        self.video_embeds = encode_split_videos(vlm, split) if video_embeds is None else video_embeds  # (V, N+1, D)
        self.prompts = [vlm.prompt(item) for item in split.items]

    def item_video_embeds(self, idx) -> torch.Tensor:
        return self.video_embeds[self.split.video_of_item[np.asarray(idx)]]  # (B, N+1, D)

    def inputs_fn(self, idx) -> PolicyInputs:
        return self.vlm.policy_inputs([self.prompts[i] for i in idx], self.item_video_embeds(idx))

    def reward_fn(self, idx, inputs: PolicyInputs, masks: torch.Tensor) -> torch.Tensor:
        """masks (B, G, N) -> rewards (B, G) from the frozen LLM, batched over every mask of every item."""
        items = [self.split.items[i] for i in idx]
        if self.reward == "generation":
            return generation_rewards(self.vlm, items, self.item_video_embeds(idx), masks)
        return multiple_choice_rewards(self.vlm, items, self.split.answers[np.asarray(idx)], self.item_video_embeds(idx), masks)


def policy_keep_rule(vlm: VideoLLM, policy: CompressionPolicy, items: list[dict], retention: float, imp_ratio: float = 0.5,
                     max_frame_ratio: float | None = None):
    """The trained policy as an evaluation keep rule (METHOD §5): keep_rule(idx, video_embeds) -> (B, N) masks."""

    @torch.no_grad()
    def rule(idx, video_embeds):
        inputs = vlm.policy_inputs([vlm.prompt(items[i]) for i in idx], video_embeds)
        token_logits, frame_logits = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
        return torch.stack([select_tokens(scores(f), scores(s), vlm.grid, retention, imp_ratio, max_frame_ratio)
                            for f, s in zip(frame_logits, token_logits)])

    return rule


def train_policy_on_split(model_dir, world_dir, num_frames: int, cfg, out_dir, items_file=None, reward: str = "multiple_choice",
                          accelerator=None, resume: bool = False, progress: bool = True):
    """Load the frozen video LLM, train a fresh policy on the (blind-filtered) train split, save it to `out_dir`.
    The notebook stage and `accelerate launch -m cacovid_lib.launch_policy_training` both call this.
    With `resume`, training continues from the last checkpoint in `out_dir`. Returns (policy, TrainerState)."""
    from dataclasses import asdict
    from pathlib import Path

    from accelerate import Accelerator

    from .data import load_split
    from .policy import load_policy, save_policy
    from .train_policy import load_trainer_state, save_training_checkpoint, train_policy

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    vlm = VideoLLM.from_pretrained(model_dir, num_frames=num_frames, device=accelerator.device)
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    split = load_split(world_dir, "train", num_frames, items_file=items_file)
    task = PolicyTask(vlm, split, reward=reward)
    llm = vlm.model.model.language_model
    resumed = load_trainer_state(out_dir) if resume else None
    policy = load_policy(out_dir, llm) if resumed else CompressionPolicy.from_llm(llm, seed=cfg.seed)
    state, optimizer_state = resumed or (None, None)

    def checkpoint(model, st, opt_state):
        if accelerator.is_main_process:
            save_training_checkpoint(out_dir, model, st, opt_state, cfg, str(model_dir))
        accelerator.wait_for_everyone()

    state = train_policy(policy.to(accelerator.device), task.inputs_fn, task.reward_fn, len(split), cfg, accelerator, state,
                         optimizer_state, checkpoint, progress)
    policy = accelerator.unwrap_model(policy)
    if accelerator.is_main_process:  # training finished: the folder holds the policy only
        save_policy(policy, out_dir, str(model_dir), {"train_config": asdict(cfg), "step": state.step})
        Path(out_dir, "trainer_state.pt").unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return policy, state


@torch.no_grad()
def selection_cost(vlm: VideoLLM, policy: CompressionPolicy, item: dict, video_embeds: torch.Tensor, retention: float,
                   imp_ratio: float = 0.5, repeats: int = 20) -> dict:
    """Median wall time of selecting tokens for one video (policy forward + any-ratio selection) against one LLM
    forward over the prompt with every video token. video_embeds (N+1, D)."""
    rule = policy_keep_rule(vlm, policy, [item], retention, imp_ratio)
    prompt = vlm.prompt(item)
    full = vlm.assemble(prompt, video_embeds, torch.ones(video_embeds.shape[0] - 1, dtype=torch.bool))
    select_ms = median_ms(lambda: rule(np.array([0]), video_embeds[None]), repeats)
    forward_ms = median_ms(lambda: vlm.forward_sequences([full]), repeats)
    return {"selection_ms": round(select_ms, 3), "llm_forward_all_tokens_ms": round(forward_ms, 3),
            "selection_share_of_forward": round(select_ms / forward_ms, 4)}
