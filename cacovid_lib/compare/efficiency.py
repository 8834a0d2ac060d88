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


def median_ms(fn, repeats: int = 20, warmup: int = 2) -> float:
    """Median wall time of `fn()` in milliseconds, after `warmup` untimed calls (CUDA work is waited for)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


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
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
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
    peak = peak_memory_mb(lambda: timed.setdefault("ms", median_ms(fn, repeats, warmup)), device)
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

@dataclass
class DecoderShape:
    """The sizes the prefill FLOPs depend on."""

    layers: int
    hidden: int  # d
    intermediate: int  # m, the SwiGLU width
    kv_dim: int  # width of the key (= value) projection (grouped-query attention)


# Qwen2-7B, the language model of LLaVA-OneVision-7B (its config.json)
QWEN2_7B = DecoderShape(layers=28, hidden=3584, intermediate=18944, kv_dim=512)


def prefill_flops(shape: DecoderShape, seq_len: int, layers: int | None = None) -> float:
    """FLOPs of a prefill over `seq_len` tokens, FastV's per-layer count (4nd² + 2n²d + 2ndm) adapted to
    grouped-query attention and SwiGLU: projections 2n·d·(2d + 2·kv_dim), attention scores and weighted
    values 4n²d, MLP 6n·d·m (three matrices). The LM head and embeddings are left out."""
    n, d = seq_len, shape.hidden
    per_layer = 2 * n * d * (2 * d + 2 * shape.kv_dim) + 4 * n * n * d + 6 * n * d * shape.intermediate
    return per_layer * (shape.layers if layers is None else layers)


def flops_table(shape: DecoderShape, video_tokens: int, text_tokens: int, ratios: list[float], policy_layers: int = 1):
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
