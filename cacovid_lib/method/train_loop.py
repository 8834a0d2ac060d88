"""The CaCoVID training loop (docs/method.md §3-4), read top to bottom; runs under accelerate on 1 CPU, 1 GPU or many.

Implementation details, each tied to the method:
1. π_old is the policy at iteration 0 of an item batch (§4): its logits are computed once, without grad,
   and every iteration samples fresh rollouts from them (§3).
2. Rollouts: content 1 / token 3G/4-1 / frame G/4 (§3); rewards = answer accuracy of the frozen video LLM
   over all G masks of an item in batched forwards (§3, last paragraph).
3. Per-item memory: each iteration appends its masks and rewards; the loss is recomputed over the whole
   memory with the current policy, then one optimiser step (§4).
4. Advantages are group-normalised over the token-mode memory and the frame-mode memory separately (§4).
5. Loss = balanced clipped token loss + clipped frame loss (+ optional KL to Bernoulli(0.5)) (§4).
6. Adaptive sample rate per item after every iteration (§4).
7. Two parameter groups: heads at `lr`, the copied decoder layer at `lr · layer_lr_scale` (§2); AdamW,
   cosine schedule, grad-norm clip (§2).
8. Every random draw of step s comes from a generator seeded with (seed, s, process), so a run resumed
   from a checkpoint ends with the same policy as an uninterrupted one.
9. Ablation switches (defaults = the release): `sampling_modes` drops content and/or frame rollouts (their share
   goes to the token mode, `sampling.mode_counts`; a disabled mode has no memory, no loss and NaN rewards in the
   history); `sampler="independent"` replaces the token mode's rank bands with independent Bernoulli draws.
10. Release-fidelity options (defaults = the kit's behaviour, the embedded pipeline's; paper/params.yaml sets the
   release's): `frame_clipping`, `sample_rate_schedule`, `lr_schedule`, `reward_max_new_tokens` (field comments).
11. Training health (method/health.py) joins every history row: zero-spread fractions, clipped-ratio fractions,
   entropies, KL to π_old, gradient norm before clipping, kept tokens per rollout. It is computed from detached
   values and changes no number of the training itself.
12. Anti-collapse options against the token head's collapse, in neither the paper nor the release (docs/method.md §9
   D14-D15): an entropy bonus on the token head (`entropy_weight`, 0.5 in the embedded default) and a sampling
   temperature on π_old's token scores (`sampling_temperature`, off); both default to the release's behaviour here.
13. Everything stays on the input's device: π_old's logits, the video tokens the density-peak picks read (~90 MB per
   item for a 7B LLM), rollouts, rewards and the loss, with the random generator on that device too; on the CPU
   this is the very same computation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from tqdm import tqdm

from cacovid_lib.io_utils import COUNT, POSITIVE, RATIO, SEED, KitInputError, Range, atomic_path, check_ranges
from cacovid_lib.method.grpo import (
    SAMPLE_RATE_SCHEDULES, adapt_sample_rate, clipped_objective, group_advantages, kl_to_uniform, mean_bernoulli_entropy,
    sample_rate_signal, token_loss
)
from cacovid_lib.method.health import bernoulli_entropy, bernoulli_kl, clip_fractions, mean_kept_tokens, zero_spread_fraction
from cacovid_lib.method.policy import (
    CompressionPolicy, PolicyInputs, action_logprobs, cosine_schedule, policy_optimizer, save_policy, scores
)
from cacovid_lib.method.sampling import FRAME_CLIPPINGS, MODES, SAMPLERS, sample_rollouts

LR_SCHEDULES = ("cosine", "release_cycling")


@dataclass
class PolicyTrainConfig:
    """Hyper-parameters of policy training (release values in brackets where ours differ)."""

    steps: int = 100  # optimiser steps = item batches × num_iter_for_item
    items_per_step: int = 4  # training items per batch (per process)
    num_generations: int = 32  # G rollouts per item and iteration
    num_iter_for_item: int = 5  # iterations (optimiser steps) per item batch, all sampling from π_old
    sample_rate: float = 0.125  # initial r: k = round(r·h·w) tokens per frame [0.02 on 14x14 -> 4]
    min_sample_rate: float = 0.0625  # adaptive-rate floor [0.01]
    max_sample_rate: float = 0.25  # adaptive-rate cap [0.12]
    group_size: int = 2  # tokens per rank band ≈ group_size·k
    max_group_prob: float = 2.0  # group probability cap = max_group_prob / n_groups
    frame_ratio: float = 0.125  # frames chosen by each frame-mode rollout
    eps_low: float = 0.2  # clip range of the ratio, below
    eps_high: float = 0.28  # clip range of the ratio, above
    kl_weight: float = 0.0  # weight of KL to Bernoulli(0.5) (release: 0)
    # ---- anti-collapse measures, in neither the paper nor the release (docs/method.md D14-D15); off by default ----
    entropy_weight: float = 0.0  # entropy bonus: the loss subtracts this x the token head's mean Bernoulli entropy
    sampling_temperature: float = 1.0  # token-mode rollouts rank and draw from π_old's scores / this (> 1: flatter);
    # the loss's ratios keep the untempered π_old
    lr: float = 1e-3  # heads' learning rate [1e-6·world_size/8 for 7B]
    layer_lr_scale: float = 0.1  # copied decoder layer's lr = lr · this
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 0  # save a resumable checkpoint every this many steps (0: only at the end)
    # ablation of the sampling modes (§3): which modes produce rollouts; "token" is required (see below)
    sampling_modes: tuple[str, ...] = MODES
    # ablation of the convergence claim (§3): "grouped" rank-band token sampling, or the "independent" Bernoulli
    # baseline (no budget: the adaptive sample rate then only sets the content and frame modes' budget)
    sampler: str = "grouped"
    # ---- release fidelity (docs/method.md §2-§4): the first choice is the kit's (params.yaml),
    # "release"/"release_cycling" the authors' code (paper/params.yaml) ----
    # frame-mode clipping (§3 frame mode): "kit" caps each frame at 3/t on the item's softmax and floors it at 1/t²
    # (the paper's cap); "release" clips the whole (rollouts, t) tensor as the release does: floor 1/G_frame²
    # (1/64 with G = 32), no cap in effect (at t = 32 the top frame keeps 0.32-0.56 of the mass)
    frame_clipping: Literal["kit", "release"] = "kit"
    # adaptive sample rate (§4): "kit" adapts from this iteration's token-mode mean reward and carries each item's
    # rate across epochs; "release" adapts from the mean over the item's whole token-mode memory and starts every
    # item batch at `sample_rate` (the release's 0.02)
    sample_rate_schedule: Literal["kit", "release"] = "kit"
    # learning-rate schedule (§2): "cosine" is one cosine from lr to 0 over `steps`; "release_cycling" is the
    # release's: a cosine sized to the item batches (steps / num_iter_for_item) but stepped every iteration, so it
    # cycles: 0 at 20% of the run (with 5 iterations per item), full at 40%, 0 at 60%, full at 80%
    lr_schedule: Literal["cosine", "release_cycling"] = "cosine"
    # new tokens decoded for the generation reward (reward "generation", models/rewards.generation_rewards; not read
    # by this loop): the release decodes up to 768 near-greedily; 8 keeps CPU runs short but truncates free-form/OCR
    reward_max_new_tokens: int = 8

    def __post_init__(self):
        check_ranges(self, steps=COUNT, items_per_step=COUNT, num_iter_for_item=COUNT, group_size=COUNT,
                     max_group_prob=POSITIVE, frame_ratio=RATIO, eps_low=Range(0, 1, high_open=True),
                     eps_high=Range(0), kl_weight=Range(0), lr=POSITIVE, layer_lr_scale=Range(0), weight_decay=Range(0),
                     grad_clip=POSITIVE, seed=SEED, checkpoint_every=Range(0))
        self.sampling_modes = (self.sampling_modes,) if isinstance(self.sampling_modes, str) else tuple(self.sampling_modes)
        unknown = [m for m in self.sampling_modes if m not in MODES]
        if unknown:
            raise KitInputError(f"sampling_modes: {self.sampling_modes} has unknown mode {unknown[0]!r}; "
                                f"valid: {', '.join(MODES)}")
        if len(set(self.sampling_modes)) != len(self.sampling_modes):
            raise KitInputError(f"sampling_modes: {self.sampling_modes} names a mode twice")
        # the token head is what inference selects with (§5) and the token-mode reward drives the adaptive rate (§4);
        # content has no policy to train and frame alone would leave the token head untrained
        if "token" not in self.sampling_modes:
            raise KitInputError(f"sampling_modes: {self.sampling_modes} must include 'token' (the token head is what "
                                f"inference uses); valid: {', '.join(MODES)}")
        if self.sampler not in SAMPLERS:
            raise KitInputError(f"sampler: {self.sampler!r} is unknown; valid: {', '.join(SAMPLERS)}")
        for name, valid in (("frame_clipping", FRAME_CLIPPINGS), ("sample_rate_schedule", SAMPLE_RATE_SCHEDULES),
                            ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in valid:
                raise KitInputError(f"{name}: {getattr(self, name)!r} is unknown; valid: {', '.join(valid)}")
        if self.reward_max_new_tokens < 1:
            raise KitInputError(f"reward_max_new_tokens: {self.reward_max_new_tokens} must be at least 1")
        if self.entropy_weight < 0 or self.sampling_temperature <= 0:
            raise KitInputError(f"entropy_weight: {self.entropy_weight} must be >= 0 and sampling_temperature: "
                                f"{self.sampling_temperature} > 0")
        if self.num_generations < 4:
            raise KitInputError(f"num_generations: {self.num_generations} is too small (need >= 4: 1 content, token, frame)")
        if self.steps % self.num_iter_for_item:
            raise KitInputError(f"steps: {self.steps} must be a multiple of num_iter_for_item ({self.num_iter_for_item})")
        if not 0 < self.min_sample_rate <= self.sample_rate <= self.max_sample_rate <= 1:
            raise KitInputError("sample_rate: need 0 < min_sample_rate <= sample_rate <= max_sample_rate <= 1")
        if self.checkpoint_every % self.num_iter_for_item:
            raise KitInputError(f"checkpoint_every: {self.checkpoint_every} must be a multiple of num_iter_for_item "
                                f"({self.num_iter_for_item}), so that a resumed run starts at an item batch")


@torch.no_grad()
def item_health(token_logits, frame_logits, old_token_logits, old_frame_logits, memory, cfg: PolicyTrainConfig) -> dict:
    """Health of one item's step (method/health.py), from the same logits as its loss, detached: token-decision
    ratios clipped low/high, entropies of the token and frame heads, exact KL per decision to π_old."""
    _, tok_adv, logp_new, logp_old = token_decisions(token_logits, old_token_logits, memory)
    clip_low, clip_high = clip_fractions(logp_new, logp_old, tok_adv, cfg.eps_low, cfg.eps_high)
    return {"clip_low": clip_low, "clip_high": clip_high,
            "entropy_token": bernoulli_entropy(token_logits), "entropy_frame": bernoulli_entropy(frame_logits),
            "kl_token": bernoulli_kl(token_logits, old_token_logits), "kl_frame": bernoulli_kl(frame_logits, old_frame_logits)}


def iteration_health(rewards: torch.Tensor, modes: np.ndarray, masks: torch.Tensor) -> dict:
    """Health of one iteration's rollouts: rewards (B, G), modes (G,) of every item, masks (B, G, N)."""
    return {"zero_spread_all": zero_spread_fraction(rewards),
            "zero_spread_token": zero_spread_fraction(rewards[:, modes == "token"]),
            "zero_spread_frame": zero_spread_fraction(rewards[:, modes == "frame"]),
            "kept_tokens": mean_kept_tokens(masks)}


# inputs_fn(item_indices) -> PolicyInputs; reward_fn(item_indices, inputs, masks (B, G, N)) -> rewards (B, G)
InputsFn = Callable[[np.ndarray], PolicyInputs]
RewardFn = Callable[[np.ndarray, PolicyInputs, torch.Tensor], torch.Tensor]


@dataclass
class TrainerState:
    step: int = 0
    sample_rates: dict = field(default_factory=dict)  # item index -> current r
    history: list = field(default_factory=list)


def item_batches(num_items: int, cfg: PolicyTrainConfig, process: int, num_processes: int):
    """Item indices of every batch, reshuffled each epoch; each process takes its own slice."""
    per_batch = cfg.items_per_step * num_processes
    if num_items < per_batch:  # no epoch would yield a batch: the loop below would never end
        raise KitInputError(f"items: {num_items} items are fewer than one batch ({cfg.items_per_step} per step x "
                            f"{num_processes} processes = {per_batch})")
    batches, epoch = [], 0
    while len(batches) < cfg.steps // cfg.num_iter_for_item:
        order = np.random.default_rng([cfg.seed, epoch]).permutation(num_items)
        for start in range(0, num_items - per_batch + 1, per_batch):
            batches.append(order[start:start + per_batch][process::num_processes])
        epoch += 1
    return batches


def lr_factor(step: int, steps: int, num_iter_for_item: int, schedule: str = "cosine") -> float:
    """Multiplier of the learning rate after `step` scheduler steps. "cosine": one half-cosine from 1 to 0 over
    `steps`, then 0. "release_cycling": the release's cosine, sized to the item batches (steps / num_iter_for_item)
    but stepped once per iteration, and not stopped at its end, so it keeps cycling between 1 and 0."""
    if schedule == "release_cycling":
        period = max(steps // num_iter_for_item, 1)  # the scheduler's length: one step per item batch
        return cosine_schedule(step, period, cycling=True)
    return cosine_schedule(step, steps)


def make_optimizer(policy: CompressionPolicy, cfg: PolicyTrainConfig):
    """AdamW with the copied layer at cfg.layer_lr_scale of the heads' learning rate, cosine schedule
    (cfg.lr_schedule): policy.policy_optimizer."""
    return policy_optimizer(policy, cfg.lr, cfg.layer_lr_scale, cfg.weight_decay,
                            lambda s: lr_factor(s, cfg.steps, cfg.num_iter_for_item, cfg.lr_schedule))


def token_decisions(token_logits, old_token_logits, memory):
    """An item's token-mode memory as decisions: actions (M_tok, N), advantages (M_tok,), log π_θ and log π_old of
    the actions (M_tok, N). token logits (N, 2)."""
    tok_actions = torch.stack(memory["token_masks"])  # (M_tok, N)
    tok_adv = group_advantages(torch.tensor(memory["token_rewards"], device=token_logits.device))  # (M_tok,)
    logp_new = action_logprobs(token_logits.expand(len(tok_actions), -1, -1), tok_actions)  # (M_tok, N)
    logp_old = action_logprobs(old_token_logits.expand(len(tok_actions), -1, -1), tok_actions)
    return tok_actions, tok_adv, logp_new, logp_old


def item_loss(token_logits, frame_logits, old_token_logits, old_frame_logits, memory, cfg: PolicyTrainConfig):
    """Loss of one item over its memory. token logits (N, 2), frame logits (t, 2)."""
    tok_actions, tok_adv, logp_new, logp_old = token_decisions(token_logits, old_token_logits, memory)
    loss = token_loss(clipped_objective(logp_new, logp_old, tok_adv, cfg.eps_low, cfg.eps_high), tok_actions)
    if memory["frame_actions"]:
        fr_actions = torch.stack(memory["frame_actions"])  # (M_frame, t)
        fr_adv = group_advantages(torch.tensor(memory["frame_rewards"], device=frame_logits.device))
        fr_new = action_logprobs(frame_logits.expand(len(fr_actions), -1, -1), fr_actions)
        fr_old = action_logprobs(old_frame_logits.expand(len(fr_actions), -1, -1), fr_actions)
        loss = loss + clipped_objective(fr_new, fr_old, fr_adv, cfg.eps_low, cfg.eps_high).mean()
    if cfg.kl_weight:
        loss = loss + cfg.kl_weight * kl_to_uniform(logp_new)
    if cfg.entropy_weight:
        loss = loss - cfg.entropy_weight * mean_bernoulli_entropy(token_logits)
    return loss


def train_policy(policy, inputs_fn: InputsFn, reward_fn: RewardFn, num_items: int, cfg: PolicyTrainConfig,
                 accelerator=None, state: TrainerState | None = None, optimizer_state: dict | None = None,
                 checkpoint_fn=None, progress: bool = True, step_fn=None) -> TrainerState:
    """Train `policy` in place for cfg.steps optimiser steps (or the rest of them, from `state`).
    `step_fn(record)`, if given, is called on every process after each step with its history row (logging only)."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    state = state or TrainerState()
    opt, sched = make_optimizer(policy, cfg)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state["optimizer"])
        sched.load_state_dict(optimizer_state["scheduler"])
    model, opt = accelerator.prepare(policy, opt)
    batches = item_batches(num_items, cfg, accelerator.process_index, accelerator.num_processes)
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train policy", disable=not (progress and accelerator.is_main_process),
               mininterval=5)
    while state.step < cfg.steps:
        batch_no = state.step // cfg.num_iter_for_item
        idx = batches[batch_no]
        # on the model's device, as every tensor the rollouts draw from (a CPU generator cannot drive a CUDA draw)
        gen = torch.Generator(device=accelerator.device).manual_seed(cfg.seed * 1_000_003 + batch_no * 97 + accelerator.process_index)
        inputs = inputs_fn(idx)
        # π_old: the policy at iteration 0 of this batch (no grad)
        with torch.no_grad():
            old_tok, old_fr = model(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
        old_tok, old_fr = old_tok.float(), old_fr.float()  # (B, N, 2), (B, t, 2), on the model's device
        memory = [{"token_masks": [], "token_rewards": [], "frame_actions": [], "frame_rewards": []} for _ in idx]
        # kit: each item's rate carried over from its last visit; release: every item batch starts at sample_rate
        rates = [state.sample_rates.get(int(i), cfg.sample_rate) if cfg.sample_rate_schedule == "kit" else cfg.sample_rate
                 for i in idx]
        for _ in range(cfg.num_iter_for_item):
            # rollouts from π_old for every item, rewarded by the frozen video LLM in batched forwards
            rolls = [sample_rollouts(scores(old_tok[b]) / cfg.sampling_temperature, scores(old_fr[b]), inputs.raw_video[b], inputs.grid,
                                     cfg.num_generations, rates[b], cfg.group_size, cfg.max_group_prob, cfg.frame_ratio, gen,
                                     cfg.sampling_modes, cfg.sampler, cfg.frame_clipping)
                     for b in range(len(idx))]
            masks = torch.stack([r.masks for r in rolls])  # (B, G, N)
            rewards = reward_fn(idx, inputs, masks).float().to(masks.device)  # (B, G); the reward functions return CPU ones
            # every mode keeps its column (CSV, plots); a disabled mode's reward is NaN
            record = {"step": state.step} | {f"reward_{m}": 0.0 if m in cfg.sampling_modes else math.nan for m in MODES}
            next_rates = list(rates)
            for b, (roll, rew) in enumerate(zip(rolls, rewards)):
                modes = np.array(roll.mode)
                tok, fr = modes == "token", modes == "frame"
                memory[b]["token_masks"] += list(roll.masks[tok])
                memory[b]["token_rewards"] += rew[tok].tolist()
                memory[b]["frame_actions"] += list(roll.frame_actions)
                memory[b]["frame_rewards"] += rew[fr].tolist()
                for mode in cfg.sampling_modes:
                    record[f"reward_{mode}"] += float(rew[modes == mode].mean()) / len(idx)
                signal = sample_rate_signal(rew[tok], torch.tensor(memory[b]["token_rewards"], device=rew.device), cfg.sample_rate_schedule)
                next_rates[b] = adapt_sample_rate(rates[b], signal, floor=cfg.min_sample_rate, cap=cfg.max_sample_rate)
                state.sample_rates[int(idx[b])] = next_rates[b]
            health = iteration_health(rewards, np.array(rolls[0].mode), masks)
            # loss over the whole memory with the current policy, one optimiser step
            new_tok, new_fr = model(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
            loss = torch.stack([item_loss(new_tok[b].float(), new_fr[b].float(), old_tok[b], old_fr[b], memory[b], cfg)
                                for b in range(len(idx))]).mean()
            per_item = [item_health(new_tok[b].detach().float(), new_fr[b].detach().float(), old_tok[b], old_fr[b],
                                    memory[b], cfg) for b in range(len(idx))]
            health |= {key: float(np.mean([h[key] for h in per_item])) for key in per_item[0]}
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)  # the norm before clipping
            opt.step()
            sched.step()
            record.update(loss=loss.item(), sample_rate=float(np.mean(rates)), lr=sched.get_last_lr()[0],
                          grad_norm=math.nan if grad_norm is None else float(grad_norm), **health)  # None: DeepSpeed's
            rates = next_rates
            state.history.append(record)
            state.step += 1
            if step_fn is not None:
                step_fn(record)
            bar.update(1)
            bar.set_postfix(token=f"{record['reward_token']:.2f}", frame=f"{record['reward_frame']:.2f}", refresh=False)
        if checkpoint_fn and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
            checkpoint_fn(accelerator.unwrap_model(model), state, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
    bar.close()
    return state


# ---- resumable checkpoints -----------------------------------------------------------------------
def save_training_checkpoint(folder, policy, state: TrainerState, optimizer_state: dict, cfg: PolicyTrainConfig,
                             base_model: str) -> None:
    """The policy checkpoint (safetensors + JSON with the resolved config) plus trainer_state.pt to resume."""
    folder = Path(folder)
    save_policy(policy, folder, base_model, {"train_config": asdict(cfg), "step": state.step})
    with atomic_path(folder / "trainer_state.pt") as tmp:
        torch.save({"state": asdict(state), "optimizer_state": optimizer_state}, tmp)


def load_trainer_state(folder) -> tuple[TrainerState, dict] | None:
    path = Path(folder) / "trainer_state.pt"
    if not path.is_file():
        return None
    blob = torch.load(path, weights_only=False)
    return TrainerState(**blob["state"]), blob["optimizer_state"]
