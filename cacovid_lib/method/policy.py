"""The CaCoVID policy network (docs/method.md §2) and its checkpoints (policy tensors only, safetensors + JSON).

One decoder layer of the LLM's own class, initialised as a copy of the LLM's first layer and run
bidirectionally over the whole prompt (so video tokens see the question), then an RMSNorm and two
MLP heads D -> D/2 -> D/4 -> D/8 -> D/16 -> 2 (SiLU between): one on every video token, one on the
mean of each frame's tokens. The two logits are a Bernoulli keep/drop distribution; the score is
z[1] - z[0], always computed in float32 (as the release: bf16 rounding of the difference changes selections).
The bidirectional mask is a 4-D additive one, which eager and sdpa attention read alike; flash_attention_2 reads
a 2-D padding mask instead, so the policy refuses it (load the LLM with sdpa or eager). Tensor names follow the release (`layers.0.*`, `layernorm`, `token_compress`,
`frame_compress`), so the authors' `compression_policy.*` tensors load without renaming.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cacovid_lib.io_utils import KitInputError, atomic_path, write_json_atomic


@dataclass
class PolicyInputs:
    """What the policy sees for a batch of items (built by the video LLM adapter)."""

    embeds: torch.Tensor  # (B, L, D) full prompt embeddings
    positions: torch.Tensor  # (B, L) the LLM's position ids, or (B, 3, L) multimodal rotary ids (Qwen2.5-VL)
    attention_mask: torch.Tensor  # (B, L) 1 = real token
    video_mask: torch.Tensor  # (B, L) True on the t·h·w prunable video tokens
    raw_video: torch.Tensor  # (B, N, D) video tokens as the LLM receives them
    grid: tuple[int, int, int]


def score_mlp(dim: int, out: int = 2) -> nn.Sequential:
    """D -> D/2 -> D/4 -> D/8 -> D/16 -> out with SiLU between (indices 0,2,4,6,8 are the Linear layers)."""
    widths = [dim, dim // 2, dim // 4, dim // 8, dim // 16]
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    layers.append(nn.Linear(widths[-1], out))
    return nn.Sequential(*layers)


MASK_SAFE_ATTENTION = ("eager", "sdpa")  # implementations that read the policy's 4-D additive mask as it is meant


def check_attention_implementation(layer: nn.Module) -> None:
    """Refuse an attention implementation that would misread the policy's 4-D additive mask: flash_attention_2 in the
    pinned transformers expects a 2-D padding mask, where a real token's additive 0 reads as padding."""
    implementation = getattr(getattr(layer.self_attn, "config", None), "_attn_implementation", None) or "eager"
    if implementation not in MASK_SAFE_ATTENTION:
        raise KitInputError(f"attn_implementation: {implementation!r} cannot run the policy's bidirectional mask; "
                            f"valid: {', '.join(MASK_SAFE_ATTENTION)} (load the video LLM with one of them)")


class CompressionPolicy(nn.Module):
    def __init__(self, first_layer: nn.Module, rotary_emb: nn.Module, norm: nn.Module, hidden_size: int):
        super().__init__()
        self.layers = nn.ModuleList([first_layer])
        self.rotary_emb = rotary_emb
        self.layernorm = norm
        self.token_compress = score_mlp(hidden_size)
        self.frame_compress = score_mlp(hidden_size)
        self.hidden_size = hidden_size

    @classmethod
    def from_llm(cls, language_model, seed: int = 0) -> "CompressionPolicy":
        """Copy the LLM's first decoder layer and rotary embedding; fresh heads (seeded)."""
        torch.manual_seed(seed)
        cfg = language_model.config
        norm = type(language_model.norm)(cfg.hidden_size, eps=cfg.rms_norm_eps)
        policy = cls(copy.deepcopy(language_model.layers[0]), copy.deepcopy(language_model.rotary_emb), norm, cfg.hidden_size)
        return policy.to(language_model.dtype)

    def forward(self, inputs_embeds, position_ids, attention_mask, video_mask, grid):
        """inputs_embeds (B, L, D), position_ids (B, L) or (B, 3, L) multimodal rotary ids, attention_mask (B, L)
        1 = real token, video_mask (B, L) True on the t·h·w prunable video tokens -> token logits (B, N, 2),
        frame logits (B, t, 2)."""
        check_attention_implementation(self.layers[0])
        t, h, w = grid
        b = inputs_embeds.shape[0]
        rotary_ids, layer_ids = position_ids, position_ids
        if position_ids.ndim == 3:  # Qwen2.5-VL: its rotary embedding takes (3, B, L); its text model hands the
            rotary_ids, layer_ids = position_ids.transpose(0, 1), None  # layers no position ids for 3-D ones
        position_embeddings = self.rotary_emb(inputs_embeds, rotary_ids)
        padding = ~attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
        # every token sees every real token; additive, because eager attention adds the mask to the scores
        bidirectional = torch.zeros(padding.shape, dtype=inputs_embeds.dtype, device=inputs_embeds.device).masked_fill(
            padding, torch.finfo(inputs_embeds.dtype).min)
        hidden = self.layers[0](inputs_embeds, attention_mask=bidirectional, position_ids=layer_ids,
                                position_embeddings=position_embeddings, is_causal=False)
        video = hidden[video_mask].view(b, t * h * w, -1)  # (B, N, D)
        token_logits = self.token_compress(self.layernorm(video))  # (B, N, 2)
        frames = video.view(b, t, h * w, -1).mean(dim=2)  # (B, t, D)
        frame_logits = self.frame_compress(self.layernorm(frames))  # (B, t, 2)
        return token_logits, frame_logits


def scores(logits: torch.Tensor) -> torch.Tensor:
    """Keep score z[1] - z[0] of Bernoulli logits (..., 2) -> (...), in float32 whatever the logits' dtype: in bf16
    the difference of two close logits is rounded to 8 bits, which reorders tokens and moves frame budgets."""
    logits = logits.float()  # a no-op on float32 logits
    return logits[..., 1] - logits[..., 0]


def action_logprobs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a) for Bernoulli keep/drop logits (..., 2) and 0/1 actions (...)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


# ---- training: the optimiser and its learning-rate schedule -----------------------------------------
def cosine_schedule(step: int, steps: int, warmup: int = 0, floor: float = 0.0, peak: float = 1.0,
                    cycling: bool = False) -> float:
    """The learning rate after `step` scheduler steps, as a share of `peak` (peak=1: a LambdaLR multiplier): a linear
    warm-up over the first `warmup` steps (peak · (step + 1) / warmup), then one half-cosine from peak down to
    peak · floor over the remaining steps - warmup, held there after `steps`; cycling=True: not held, it keeps
    cycling (period 2 · (steps - warmup))."""
    if steps <= warmup:
        raise KitInputError(f"cosine schedule: {steps} steps leave nothing after a warm-up of {warmup}")
    if step < warmup:
        return peak * (step + 1) / warmup
    done = (step if cycling else min(step, steps)) - warmup
    cosine = 0.5 * (1 + math.cos(math.pi * done / (steps - warmup)))
    return peak * (cosine if floor == 0 else floor + (1 - floor) * cosine)


def policy_optimizer(policy: nn.Module, lr: float, layer_lr_scale: float, weight_decay: float, schedule: Callable[[int], float]):
    """AdamW over the policy's two parameter groups (§2): the heads at `lr`, the copied decoder layer (`layers.*`) at
    lr · layer_lr_scale; with a LambdaLR whose multiplier after s steps is schedule(s). -> (optimizer, scheduler)."""
    layer = [p for n, p in policy.named_parameters() if n.startswith("layers.")]
    heads = [p for n, p in policy.named_parameters() if not n.startswith("layers.")]
    opt = torch.optim.AdamW([{"params": heads, "lr": lr}, {"params": layer, "lr": lr * layer_lr_scale}],
                            weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


# ---- checkpoints: the policy only ------------------------------------------------------------------
def save_policy(policy: CompressionPolicy, folder, base_model: str, extra: dict | None = None) -> None:
    """policy.safetensors + policy_config.json (base model, hidden size, anything in `extra`), atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items() if "rotary_emb" not in k}
    with atomic_path(folder / "policy.safetensors") as tmp:
        save_file(state, str(tmp))
    write_json_atomic(folder / "policy_config.json", {"base_model": str(base_model), "hidden_size": policy.hidden_size,
                                                       **(extra or {})})


def load_policy(folder, language_model, dtype: torch.dtype | None = None) -> CompressionPolicy:
    """Load a policy checkpoint onto `language_model`'s architecture; a hidden-size mismatch is a clear error.
    dtype: the policy's parameter dtype (default: the LLM's); float32 keeps a resumed run's float32 weights exact."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_file, weights = folder / "policy_config.json", folder / "policy.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise KitInputError(f"{folder}: not a policy checkpoint (needs policy.safetensors and policy_config.json)")
    config = json.loads(config_file.read_text())
    if config["hidden_size"] != language_model.config.hidden_size:
        raise KitInputError(f"{folder}: policy was trained for hidden size {config['hidden_size']} "
                            f"({config['base_model']}), the model has {language_model.config.hidden_size}")
    policy = CompressionPolicy.from_llm(language_model)
    policy = policy if dtype is None else policy.to(dtype)
    missing, unexpected = policy.load_state_dict(load_file(str(weights)), strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise KitInputError(f"{weights}: tensors do not match the policy (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return policy
