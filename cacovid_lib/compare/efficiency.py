"""Efficiency measurements: wall time (warm-up + median), peak memory, one prefill as generation does it, and an
analytic prefill-FLOPs model."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.keep import Selection


def synchronize(device=None) -> None:
    """Wait for queued CUDA work before reading the clock: on `device` (a torch device or name) where one is given
    (nothing to wait for on a CPU), else on every GPU (torch.cuda.synchronize() alone waits for the current one
    only, and a model may be spread over several). Nothing is waited for before CUDA was first used."""
    if device is not None and torch.device(device).type != "cuda":
        return
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return
    if device is not None:
        torch.cuda.synchronize(device)
        return
    for index in range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)


def timed_s(fn, device=None) -> tuple[object, float]:
    """(fn(), its wall time in seconds), CUDA work queued before and by it waited for (synchronize(device))."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def median_ms(fn, repeats: int = 20, warmup: int = 2, device=None) -> float:
    """Median wall time of `fn()` in milliseconds over `repeats` timed calls (timed_s: CUDA work waited for, on
    `device` or on every GPU), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return float(np.median([timed_s(fn, device)[1] for _ in range(repeats)]) * 1000)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_memory_mb(fn, device) -> float:
    """Extra memory at the peak of `fn()` over what was held before it, in MiB: CUDA's allocator peak on a GPU;
    on CPU the process's peak resident set (Linux VmHWM, reset through /proc/self/clear_refs), which also counts
    allocator caching, so small differences between methods are noise."""
    if torch.device(device).type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS to the current RSS
    except OSError:
        return float("nan")
    before = _rss_mb()
    fn()
    return max(0.0, _peak_rss_mb() - before)



def median_ms_and_peak_mb(fn, device, repeats: int = 20, warmup: int = 2) -> tuple[float, float]:
    """(median_ms, peak_memory_mb) of `fn()` from the same runs: the timed loop (warm-up included, CUDA
    synchronised) runs inside the peak-memory measurement, so a row costs no extra call."""
    timed = {}
    peak = peak_memory_mb(lambda: timed.setdefault("ms", median_ms(fn, repeats, warmup, device)), device)
    return timed["ms"], peak


@torch.no_grad()
def prefill(vlm, prompt, video_embeds: torch.Tensor, sel: Selection) -> torch.Tensor:
    """One prefill of one item as generation does it: the LLM over the prompt with the kept tokens, the LM head on
    the last position only. video_embeds (N+1, D) -> next-token logits (1, V). FastV: every token through its
    first layers, then the kept ones (forward_pruned_inside, whose LM head covers every position)."""
    video = video_embeds if sel.video_embeds is None else sel.video_embeds[0]
    keep = sel.keeps[0].to(video.device)
    if sel.prune_after_layer is not None:
        full = vlm.assemble(prompt, video, torch.ones_like(keep))
        logits, lengths = vlm.forward_pruned_inside([full], [len(prompt.prefix_ids)], keep[None], sel.prune_after_layer)
        return logits[:, lengths[0] - 1]
    hidden, _ = vlm.hidden_states([vlm.assemble(prompt, video, keep)])  # (1, L, D)
    return vlm.model.lm_head(hidden[:, -1])

@dataclass(frozen=True)
class LLMShape:
    """The language model's sizes: what the prefill FLOPs (and a random-weight model's build) depend on."""

    layers: int
    hidden: int  # d
    intermediate: int  # m, the SwiGLU width
    heads: int
    kv_heads: int  # grouped-query attention
    vocab: int = 0  # 0: the tokenizer's own vocabulary size

    @property
    def kv_dim(self) -> int:
        """Width of the key (= value) projection."""
        return self.hidden // self.heads * self.kv_heads


# Qwen2-7B (its config.json): the language model of LLaVA-OneVision-7B and, with multimodal rotary ids, of Qwen2.5-VL-7B
QWEN2_7B = LLMShape(layers=28, hidden=3584, intermediate=18944, heads=28, kv_heads=4, vocab=152064)


def prefill_flops(shape: LLMShape, seq_len: int, layers: int | None = None) -> float:
    """FLOPs of a prefill over `seq_len` tokens, FastV's per-layer count (4nd² + 2n²d + 2ndm) adapted to
    grouped-query attention and SwiGLU: projections 2n·d·(2d + 2·kv_dim), attention scores and weighted
    values 4n²d, MLP 6n·d·m (three matrices). The LM head and embeddings are left out."""
    n, d = seq_len, shape.hidden
    per_layer = 2 * n * d * (2 * d + 2 * shape.kv_dim) + 4 * n * n * d + 6 * n * d * shape.intermediate
    return per_layer * (shape.layers if layers is None else layers)


def flops_table(shape: LLMShape, video_tokens: int, text_tokens: int, ratios: list[float], policy_layers: int = 1):
    """Prefill FLOPs with all video tokens and at each retention ratio, and the ideal speed-up; CaCoVID adds its
    policy (one decoder layer over the full prompt) to the compressed prefill. -> one row per ratio."""
    full = prefill_flops(shape, video_tokens + text_tokens)
    policy = prefill_flops(shape, video_tokens + text_tokens, layers=policy_layers)
    rows = [{"retention": 1.0, "video_tokens": video_tokens, "prefill_tflops": full / 1e12, "speedup": 1.0,
             "with_policy_tflops": full / 1e12, "speedup_with_policy": 1.0}]
    for r in ratios:
        kept = int(r * video_tokens)
        f = prefill_flops(shape, kept + text_tokens)
        rows.append({"retention": r, "video_tokens": kept, "prefill_tflops": f / 1e12, "speedup": full / f,
                     "with_policy_tflops": (f + policy) / 1e12, "speedup_with_policy": full / (f + policy)})
    return pd.DataFrame(rows)
