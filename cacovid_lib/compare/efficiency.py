"""Efficiency measurements: wall time (warm-up + median), peak memory, one prefill as generation does it, and an
analytic prefill-FLOPs model."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.keep import Selection
from cacovid_lib.io_utils import KitInputError


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



def allocated_peak_mb(fn, device) -> float:
    """Extra memory allocated by tensors at the peak of one `fn()` over what was held before it, in MiB: CUDA's
    allocator peak on a GPU (as peak_memory_mb); on CPU the running sum of the tensor allocations and frees that
    torch.profiler records (profile_memory=True), whose maximum is the peak of live tensor memory, freed blocks
    included, which the resident set (peak_memory_mb's CPU count) cannot see. NaN where this torch's profiler does
    not expose its allocation events. The profiler slows `fn`: measure memory in a call of its own, never around a
    timed loop."""
    if torch.device(device).type == "cuda":
        return peak_memory_mb(fn, device)
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            event = stack.pop()
            if event.typed[0] == _EventType.Allocation and event.typed[1].device.type == "cpu":
                events.append((event.start_time_ns, event.typed[1].alloc_size))  # bytes, negative: a free
            stack.extend(event.children)
    except (ImportError, AttributeError, RuntimeError):
        return float("nan")
    live = np.cumsum([size for _, size in sorted(events)]) if events else np.zeros(1)
    return max(0.0, float(live.max())) / 2**20


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


# ---- prefill FLOPs per method: what each method runs in the LLM's layers ------------------------------------------
@dataclass(frozen=True)
class PrefillWork:
    """What a method runs at prefill in layers of the LLM's width, besides the LLM over its kept tokens (the count
    `method_prefill_flops` makes of it)."""

    pruned_inside: bool = False  # layers 0..fastv_layer run over every token, the rest over the kept ones (FastV)
    llm_scoring: bool = False  # reads the LLM's attention at fastv_layer over the full prompt first (scoring_flops)
    policy_layers: int = 0  # decoder layers of the LLM's shape over the full prompt before the LLM (CaCoVID's policy)
    what: str = ""  # one line: what the method runs, from the code


_BEFORE = PrefillWork(what="every LLM layer over the kept tokens; its selection reads the video embeddings (or the "
                           "vision tower's attention) only")
_SCORED = PrefillWork(llm_scoring=True, what="the LLM's attention at fastv_layer over the full prompt (registry "
                                             "_llm_scores), then every LLM layer over the kept tokens")
_POLICY = PrefillWork(policy_layers=1, what="its policy, one decoder layer of the LLM's shape over the full prompt "
                                            "(policy_inputs), then every LLM layer over the kept tokens")

METHOD_PREFILL_WORK: dict[str, PrefillWork] = {
    "all": PrefillWork(what="every LLM layer over every token"),
    "cacovid": _POLICY,  # compare/cacovid.py policy_keep_rule: the policy over vlm.policy_inputs (every video token)
    "cacovid_release_rule": _POLICY,  # the release's selection rule on the same policy's scores: CaCoVID's cost
    "random": _BEFORE,
    "uniform": _BEFORE,
    "fastv": PrefillWork(pruned_inside=True, what="layers 0..fastv_layer over every token, its scores read in that "
                                                  "same forward (FastV fuses them; the kit re-runs them in its "
                                                  "selection), the remaining layers over the kept tokens"),
    "fastv_input": _SCORED,
    "visionzip": _BEFORE,  # re-runs the vision tower for its attention here: vision-encoder work, left out
    "divprune": _BEFORE,
    "temporal_merge": _SCORED,
    "fastvid": _BEFORE,
    "flashvid": _BEFORE,
    "holitom": _BEFORE,
    "vidcom2": _BEFORE,
    "prunevid": _SCORED,
    "framefusion": _SCORED,
}
"""Registry key -> what the method runs at prefill, from the code: FastV's Selection sets prune_after_layer
(baselines.fastv_rule, inside_llm=True); FastV (input), Temporal merge, PruneVid and FrameFusion are built on
registry._llm_scores (baselines.last_token_attention); CaCoVID runs its policy (one copy of the LLM's first layer)
over the prompt with every video token. tests/test_efficiency_flops.py checks these facts against the registry."""


def prefill_work(key: str) -> PrefillWork:
    """METHOD_PREFILL_WORK[key], or a one-line error naming the known keys."""
    if key not in METHOD_PREFILL_WORK:
        raise KitInputError(f"method {key!r}: no prefill accounting; known: {', '.join(METHOD_PREFILL_WORK)}")
    return METHOD_PREFILL_WORK[key]


def scoring_flops(shape: LLMShape, seq_len: int, layer: int) -> float:
    """FLOPs of reading the last token's attention at decoder layer `layer` over `seq_len` tokens, as
    baselines.last_query_attention computes it: layers 0..layer-1 in full, then layer `layer`'s keys of every token
    (2n·d·kv_dim), the last token's query (2d²) and its attention row over every token (2n·d)."""
    n, d = seq_len, shape.hidden
    return prefill_flops(shape, n, layers=layer) + 2 * n * d * shape.kv_dim + 2 * d * d + 2 * n * d


def kept_video_tokens(video_tokens: int, retention: float) -> int:
    """floor(ρ·N), at least one: the budget every registered method keeps (baselines.token_budget)."""
    return max(1, math.floor(retention * video_tokens))


def method_prefill_flops(key: str, shape: LLMShape, video_tokens: int, text_tokens: int, retention: float,
                         fastv_layer: int) -> float:
    """Prefill FLOPs of one item for the method with registry key `key` at `retention`: what it runs in layers of the
    LLM's shape (METHOD_PREFILL_WORK), by prefill_flops' per-layer count. The LLM sees `text_tokens` (the prompt
    around the video, the never-pruned last video token included) plus the kept video tokens (floor(ρ·N); every one
    for key "all"); a method pruning inside the LLM runs layers 0..fastv_layer (K = fastv_layer + 1) over all
    N + text tokens and the other L - K over the kept ones; CaCoVID adds its policy layer over all N + text tokens;
    a method scoring with the LLM's attention adds scoring_flops over all of them.

    Left out, the same for every method or small next to one layer: the vision encoder (VisionZip's re-run of its
    tower included, which a fused implementation reads from the forward it is part of), the LM head and embeddings,
    norms, rotary embeddings and softmaxes, CaCoVID's score heads (an MLP D -> D/2 -> ... -> 2 per token) and its
    per-frame top-k, and the selection arithmetic of the baselines (pairwise cosine similarities within or across
    frames, DivPrune's greedy max-min, clustering and merging: at most about N²·D, under a tenth of one layer of
    Qwen2-7B at N = 6272)."""
    work = prefill_work(key)
    full = video_tokens + text_tokens
    kept = full if key == "all" else kept_video_tokens(video_tokens, retention) + text_tokens
    if work.pruned_inside:
        k = fastv_layer + 1
        if not 0 < k <= shape.layers:
            raise KitInputError(f"fastv_layer: {fastv_layer} is outside the LLM's layers 0..{shape.layers - 1}")
        llm = prefill_flops(shape, full, k) + prefill_flops(shape, kept, shape.layers - k)
    else:
        llm = prefill_flops(shape, kept)
    policy = prefill_flops(shape, full, work.policy_layers)
    scoring = scoring_flops(shape, full, fastv_layer) if work.llm_scoring else 0.0
    return llm + policy + scoring


def method_prefill_share(key: str, shape: LLMShape, video_tokens: int, text_tokens: int, retention: float,
                         fastv_layer: int) -> float:
    """method_prefill_flops as a share of the all-token prefill (prefill_flops over N + text tokens)."""
    return (method_prefill_flops(key, shape, video_tokens, text_tokens, retention, fastv_layer)
            / prefill_flops(shape, video_tokens + text_tokens))


def selection_prefill_flops(shape: LLMShape, video_tokens: int, text_tokens: int, sel: Selection) -> float:
    """Analytic FLOPs of `prefill` (this module) for one item's selection: the LLM layers only, over the tokens each
    layer sees (every one through layers 0..prune_after_layer where the selection prunes inside the LLM); what the
    selection itself ran (a policy, attention scores) is not in it."""
    full, kept = video_tokens + text_tokens, int(sel.keeps[0].sum()) + text_tokens
    if sel.prune_after_layer is None:
        return prefill_flops(shape, kept)
    k = sel.prune_after_layer + 1
    return prefill_flops(shape, full, k) + prefill_flops(shape, kept, shape.layers - k)


def llm_shape_of(vlm) -> LLMShape:
    """The LLMShape of a video LLM's language model, from its transformers config (`vlm.language_model.config`: a
    Qwen2 config for LLaVA-OneVision and the embedded model, Qwen2.5-VL's text config)."""
    cfg = vlm.language_model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return LLMShape(layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, intermediate=cfg.intermediate_size,
                    heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads, vocab=cfg.vocab_size)


def prompt_text_tokens(vlm, items: list[dict]) -> int:
    """The tokens the LLM sees besides the prunable video tokens, averaged over `items` and rounded: the prompt's
    prefix and suffix and the never-pruned last video token (the options' continuations are not in a prefill)."""
    prompts = [vlm.prompt(item) for item in items]
    return round(float(np.mean([len(p.prefix_ids) + len(p.suffix_ids) + 1 for p in prompts])))
