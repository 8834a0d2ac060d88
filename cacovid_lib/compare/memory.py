"""Peak memory of each registered method's selection at LLaVA-OneVision-7B's shape, with or without a GPU.

The figure is the peak of the bytes a selection holds beyond what existed before it ran (the model's weights and the
video-token embeddings it is given), for one item. It is obtained, per method, by the first of:

1. "measured on cuda": CUDA's allocator peak over the call, on a 7B-shaped model with random weights (bf16), where a
   GPU is at hand;
2. "tensor accounting on meta": the same call on a 7B-shaped model and inputs on the meta device (shapes and dtypes,
   no data, no memory), with `peak_live_bytes` adding up the storages the call creates and frees. Fused attention
   is counted as the fused kernel it is on a GPU or a CPU (`_FusedAttentionOnMeta`), not as the maps PyTorch's
   reference path, the only one meta has, would make;
3. "tensor accounting on cpu": where the method reads tensor values on the host (`.tolist()`, `int(...)`, boolean
   indexing: impossible on meta), the same accounting on the CPU with real, temporally redundant 7B-shaped
   embeddings (profile.redundant_video_embeds), the model still on meta. It works for the methods that read the
   embeddings only, and for those that read the LLM attention scores besides (stand-in values, with the real
   scoring's peak replayed: `_replayed_scores`). Such a figure depends on the data (how much a merge finds to merge);
4. "formula": an analytic count from the shapes (`_formula_bytes`; each formula's docstring says what it counts),
   where the method needs both the model and host reads (CaCoVID's policy) or what the 7B-shaped model cannot give
   (VisionZip: the real vision tower's attention on pixels).

The accounting counts every tensor the call creates, on any device (the merging methods' CPU index lists too), and
not the scratch memory inside a kernel or the allocator's rounding and caching, which CUDA's figure includes.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cacovid_lib.compare import registry
from cacovid_lib.compare.baselines import token_budget
from cacovid_lib.compare.efficiency import QWEN2_7B, LLMShape, synchronize
from cacovid_lib.io_utils import KitInputError

MB = 2**20
TABLE_COLUMNS = ["method", "retention", "peak_mb", "how", "note"]


# ---- tensor accounting ---------------------------------------------------------------------------------------------
class _LiveStorageBytes(TorchDispatchMode):
    """Adds up the bytes of the storages that operators create (an output whose storage is none of the operator's
    inputs' and not yet counted: views and in-place results add nothing) and subtracts them when the storage dies."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}  # storage address -> bytes, for the storages created under this mode
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage._cdata
            if key in inputs or key in self.live:
                continue
            self.live[key] = storage.nbytes()  # on meta too: the size the storage would have
            self.current += self.live[key]
            self.peak = max(self.peak, self.current)
            # the storage's Python object lives exactly as long as the storage (PyTorch keeps it while any tensor
            # holds the storage), so its finalizer runs when the memory would be given back
            weakref.finalize(storage, self._free, key)
        return out


class _FusedAttentionOnMeta(TorchFunctionMode):
    """On meta tensors, scaled_dot_product_attention as the fused kernel a GPU or a CPU runs (its output and its
    log-sum-exp, `_scaled_dot_product_flash_attention_for_cpu`'s meta shapes), instead of PyTorch's reference path,
    the only one meta has, which makes the (B, H, L, L) attention maps that no fused kernel makes."""

    ARGUMENTS = ["query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        given = dict(zip(self.ARGUMENTS, args)) | kwargs
        if given["query"].device.type != "meta":
            return func(*args, **kwargs)
        # the CPU kernel's meta function: its output (B, H, L, hd) and log-sum-exp (B, H, L), grouped-query or not
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            given["query"], given["key"], given["value"], given.get("dropout_p", 0.0), given.get("is_causal", False),
            attn_mask=given.get("attn_mask"), scale=given.get("scale"))[0]


def peak_live_bytes(fn) -> tuple[object, int]:
    """(fn(), the peak over the call of the bytes held by tensor storages that fn creates) on any device, meta
    included (a meta storage counts the bytes it would hold). Storages that existed before (weights, inputs) and
    views of them count nothing; a storage counts until its last tensor dies. fn's result is still held at its end,
    so the peak is at least the result's size. A storage resized in place (resize_) keeps the size it was made with."""
    with _FusedAttentionOnMeta(), _LiveStorageBytes() as counter:
        result = fn()
    return result, counter.peak


# ---- formulas ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisionShape:
    """The vision tower's sizes: LLaVA-OneVision-7B's SigLIP-so400m at 384 px (the llava-hf config's 26 layers)."""

    layers: int = 26
    hidden: int = 1152
    intermediate: int = 4304
    heads: int = 16
    patches: int = 729  # (384 / 14)^2


SIGLIP_SO400M = VisionShape()


def decoder_layer_peak_bytes(shape: LLMShape, seq_len: int, dtype_bytes: int, batch: int = 1, input_counted: bool = True,
                             padding_mask: bool = False) -> int:
    """What one decoder layer's forward holds at its peak with fused attention (no attention map). Per token, with
    d the width, m the MLP's width, kv the key width, hd the head width and e the dtype's bytes:

        2 hd e                            the rotary cos and sin (the caller holds them through every layer)
      + [input_counted] d e               the layer's input (not counted where it is the input embeddings)
      + the larger phase of
          MLP:        2 d e + 3 m e       the attention's sum, the MLP's normed input, and SwiGLU's gate,
                                          activation and up projection, all live together
          attention:  max(5 d, 3 d + 3 kv) e + 2 kv e (+ 2 d e with a padding mask)
                                          normed input, query, keys and values, and the rotation's three
                                          temporaries (of the query, then of the keys beside the rotated query);
                                          sdpa with a mask repeats the keys and values over the query heads

    times batch * L. Counted from the accounting of the installed Qwen2 layer (tests/test_memory.py)."""
    e, d, head_dim = dtype_bytes, shape.hidden, shape.hidden // shape.heads
    mlp = 2 * d * e + 3 * shape.intermediate * e
    attention = max(5 * d, 3 * d + 3 * shape.kv_dim) * e + 2 * shape.kv_dim * e + (2 * d * e if padding_mask else 0)
    per_token = 2 * head_dim * e + (d * e if input_counted else 0) + max(mlp, attention)
    return batch * seq_len * per_token


def fastv_scoring_bytes(shape: LLMShape, seq_len: int, layer: int, dtype_bytes: int, batch: int = 1) -> int:
    """Peak of FastV's scoring (`baselines.last_query_attention`) at decoder layer K = `layer`, unpadded rows: K
    layers' activations, then one attention row.

    Layers 0..K-1 run one after the other and each one's output replaces its input, so they hold one layer's
    activations at a time: decoder_layer_peak_bytes (layer 0's input is the input embeddings, not counted; from
    K = 2 on, the input of the layer at its peak is counted). Layer K then holds the rotary cos and sin, (K >= 1)
    its input, and the largest of: its RMSNorm's two float32 (L, d) copies and (L,) variance; its normed input,
    the keys and their rotation's temporaries (three, and one more for the pair's discarded partner: one key head,
    all of them where there is one); the keys, the row's logits (H, L) and its float32 softmax and mask. Plus the
    last position's query:

        peak = max([K >= 1] decoder_layer_peak_bytes,
                   batch (L (2 hd e + [K >= 1] d e + max(8 d + 8, d e + 5 kv e, kv e + H e + 8 H)) + H hd e))

    Nothing in it grows with L^2 (eager attention's full forward held every layer's (H, L, L) maps). An upper
    bound that equals the accounting from K = 1 on where the keys have 2+ heads (LLaVA-OneVision-7B: 4)."""
    e, d, heads, head_dim = dtype_bytes, shape.hidden, shape.heads, shape.hidden // shape.heads
    layers = decoder_layer_peak_bytes(shape, seq_len, e, batch, input_counted=layer >= 2) if layer >= 1 else 0
    held = 2 * head_dim * e + (d * e if layer >= 1 else 0)
    row = max(8 * d + 8, d * e + 5 * shape.kv_dim * e, shape.kv_dim * e + heads * e + 8 * heads)
    scoring = batch * (seq_len * (held + row) + heads * head_dim * e)
    return max(layers, scoring)


def cacovid_policy_bytes(shape: LLMShape, seq_len: int, video_tokens: int, dtype_bytes: int, batch: int = 1) -> int:
    """CaCoVID's selection, an estimate: the policy's input (the prompt with every video token, padded into a
    batch: L d e) and one decoder layer over it with sdpa and the policy's bidirectional mask
    (decoder_layer_peak_bytes with the input counted and the keys and values repeated), or after the layer, its
    output, the video tokens' hidden states (N d e) and the heads' RMSNorm float32 copies (2 N d 4), whichever is
    more. The per-frame top-k is O(N)."""
    e, d = dtype_bytes, shape.hidden
    layer = decoder_layer_peak_bytes(shape, seq_len, e, batch, input_counted=True, padding_mask=True)
    heads = batch * (2 * seq_len * d * e + video_tokens * d * (e + 8))
    return max(layer, heads)


def visionzip_bytes(vision: VisionShape, frames: int, dtype_bytes: int, frames_per_chunk: int = 4) -> int:
    """VisionZip's scoring (`baselines.vision_attention_received`): the tower runs c = min(frames_per_chunk, frames)
    frames at a time, layers 0..L-2 with fused attention (no map), and only the last layer's float32 weights are
    made, one chunk's (c, heads, P, P) map at a time. The larger of

        tower:    c P (2 d + 2 m) e         a layer's input, the attention's sum, the MLP's fc1 and activation
        scoring:  c heads P^2 4 + 4 c P d 4  the map (scaled and soft-maxed in place), the float32 queries and
                                            keys, and in float32 the projections and the normed input beside them

    plus every frame's (P,) scores and their concatenation (2 frames P 4). An upper bound: the accounting at
    LLaVA-OneVision-7B's shape gives about 155 MiB in bf16 and 181 MiB in float32 for 32 frames (eager attention's
    full forward held every layer's maps, about 15 GB)."""
    if frames_per_chunk < 1:
        raise KitInputError(f"frames_per_chunk: {frames_per_chunk} must be at least 1")
    e, p, d, c = dtype_bytes, vision.patches, vision.hidden, min(frames_per_chunk, frames)
    tower = c * p * (2 * d + 2 * vision.intermediate) * e
    scoring = c * vision.heads * p * p * 4 + 4 * c * p * d * 4
    return max(tower, scoring) + 2 * frames * p * 4


# ---- the table -----------------------------------------------------------------------------------------------------
def _formula_bytes(key: str, shape: LLMShape, seq_len: int, video_tokens: int, frames: int, layer: int,
                   dtype_bytes: int) -> tuple[int, str] | None:
    """(bytes, what the formula counts) for the methods that have one, else None."""
    assembled = 2 * seq_len * shape.hidden * dtype_bytes  # the prompt with every video token, and its left-padded batch
    if key in ("fastv", "fastv_input"):
        return assembled + fastv_scoring_bytes(shape, seq_len, layer, dtype_bytes), \
            "fastv_scoring_bytes + the assembled prompt (2 copies)"
    if key == "temporal_merge":
        merge = 3 * video_tokens * shape.hidden * dtype_bytes  # the merged copy, the chains' sums and their means
        return assembled + fastv_scoring_bytes(shape, seq_len, layer, dtype_bytes) + merge, \
            "fastv_scoring_bytes + the assembled prompt (2 copies) + the merge's three (N, d)"
    if key in ("cacovid", "cacovid_release_rule"):
        return cacovid_policy_bytes(shape, seq_len, video_tokens, dtype_bytes), "cacovid_policy_bytes"
    if key == "visionzip":
        return visionzip_bytes(SIGLIP_SO400M, frames, dtype_bytes), "visionzip_bytes (SigLIP-so400m, the last layer's maps, 4 frames at a time)"
    return None


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"


@torch.no_grad()
def _cuda_peak_bytes(rule, idx, batch, device) -> int:
    """CUDA's allocator peak over one call of the rule, beyond what was allocated before it (after a warm-up call,
    so that one-time workspaces are not counted)."""
    rule(idx, batch)
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    rule(idx, batch)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _replayed_scores(scores: torch.Tensor, scoring_peak: int, calls: list):
    """A stand-in for the LLM attention scores (registry's "llm_attention") on the CPU: it returns `scores` (B, N),
    fresh, after allocating and freeing the rest of `scoring_peak` bytes (uninitialised: nothing is written), so that
    the accounting sees the real scoring's peak on top of whatever the selection holds at that moment."""

    def stand_in(idx, video_embeds):
        calls.append(len(idx))
        fresh = scores[:len(idx)].clone()  # (B, N): held by the selection as the real scores would be
        # the scoring's peak, replayed next to the stand-in scores, which are on the CPU
        transient = torch.empty(max(0, scoring_peak - fresh.nbytes), dtype=torch.uint8, device="cpu")
        del transient
        return fresh

    return stand_in


class _Accounting:
    """The tensor accounting of one model's rules: on meta, else on the CPU (module docstring, ways 2 and 3)."""

    def __init__(self, ctx: registry.MethodContext, settings: registry.MethodSettings, real: torch.Tensor,
                 stand_in_scores: torch.Tensor):
        self.ctx, self.settings, self.real, self.stand_in_scores = ctx, settings, real, stand_in_scores
        self.meta = torch.empty(real.shape, dtype=real.dtype, device="meta")  # (1, N+1, D)
        self._scoring_peak: int | None = None

    def scoring_peak(self) -> int:
        """FastV's scoring on meta (what the stand-in scores replay), computed once."""
        from cacovid_lib.compare.baselines import last_token_attention

        if self._scoring_peak is None:
            scoring = lambda: last_token_attention(self.ctx.vlm, self.ctx.items, self.meta, self.settings.fastv_layer)  # noqa: E731
            self._scoring_peak = peak_live_bytes(scoring)[1]
        return self._scoring_peak

    @torch.no_grad()
    def peak(self, rule, key: str, retention: float, notes: list[str]) -> tuple[int, str] | None:
        """(peak bytes, how) of `rule` on one item, or None where neither way runs it; `notes` gets why a way failed."""
        idx = np.array([0])
        try:
            return peak_live_bytes(lambda: rule(idx, self.meta))[1], "tensor accounting on meta"
        except Exception as err:  # a host read (.tolist(), int(), boolean indexing) has no meta answer: the CPU
            notes.append(f"meta: {_first_line(err)}")
        calls: list = []
        shared = {"llm_attention": _replayed_scores(self.stand_in_scores, self.scoring_peak(), calls)}
        ctx = registry.MethodContext(vlm=self.ctx.vlm, items=self.ctx.items, policy=self.ctx.policy, shared=shared)
        cpu_rule = registry.build(key, ctx, retention, self.settings)
        try:
            peak = peak_live_bytes(lambda: cpu_rule(idx, self.real))[1]
        except Exception as err:  # the model, on meta, met the CPU data
            notes.append(f"cpu: {_first_line(err)}")
            return None
        if calls:
            notes.append("LLM attention scores: stand-in values, the scoring's peak (meta) replayed")
        return peak, "tensor accounting on cpu"


def selection_peak_table(methods: list[str] | None = None, frames: int = 32, tokens_per_frame: int = 196,
                         text_tokens: int = 128, retention: float = 0.1, shape: LLMShape = QWEN2_7B,
                         settings: registry.MethodSettings | None = None, device=None, seed: int = 0) -> pd.DataFrame:
    """Peak memory of each method's selection (registry keys; default every registered method) for one item of
    `frames` x `tokens_per_frame` video tokens and a `text_tokens`-token prompt on a LLaVA-OneVision model whose LLM
    has `shape` (default LLaVA-OneVision-7B's), bf16 -> one row per method (TABLE_COLUMNS): its key, the retention,
    the peak in MiB beyond the weights and the input embeddings, how it was obtained (module docstring) and a note
    (why a figure fell back, or what a formula counts). device: "cuda" measures on the GPU (default where one is at
    hand), anything else computes on meta and the CPU.

    On the CPU, a method that reads the LLM attention scores (registry's "llm_attention": the temporal merge,
    PruneVid, FrameFusion) gets stand-in values (seeded uniform) with the real scoring's peak, from the accounting
    on meta, replayed at the moment it asks for them (`_replayed_scores`); its note says so."""
    from cacovid_lib.compare.profile import build_llava_onevision, padded_item, redundant_video_embeds
    from cacovid_lib.method.policy import CompressionPolicy

    token_budget(1, retention)  # (0, 1] or a one-line error
    side = math.isqrt(tokens_per_frame)
    if frames < 1 or tokens_per_frame < 1 or side * side != tokens_per_frame:
        raise KitInputError(f"frames {frames} / tokens_per_frame {tokens_per_frame}: need frames >= 1 and a square token count")
    chosen = [registry.method(k) for k in (methods if methods is not None else [m.key for m in registry.METHODS])]
    settings = settings or registry.MethodSettings()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "meta"))
    measured = device.type == "cuda"
    dtype = torch.bfloat16
    torch.manual_seed(seed)
    vlm = build_llava_onevision(shape, side, frames, device if measured else "meta", dtype)
    item = padded_item(vlm, text_tokens)
    prompt = vlm.prompt(item)
    n = vlm.num_video_tokens
    seq_len = len(prompt.prefix_ids) + n + 1 + len(prompt.suffix_ids)
    policy = CompressionPolicy.from_llm(vlm.language_model, seed=seed).eval()
    ctx = registry.MethodContext(vlm=vlm, items=[item], policy=policy)  # no pixels: VisionZip has its formula
    generator = torch.Generator().manual_seed(seed)
    scale = vlm.model.config.text_config.initializer_range
    real = redundant_video_embeds(vlm.grid, shape.hidden, 0.92, scale, generator).to(dtype)[None]  # (1, N+1, D), CPU
    stand_in_scores = torch.rand(1, n, generator=generator, device="cpu")  # (1, N): read by the CPU accounting
    accounting = _Accounting(ctx, settings, real, stand_in_scores)
    rows = []
    for m in chosen:
        row = {"method": m.key, "retention": retention, "peak_mb": float("nan"), "how": "", "note": ""}
        notes: list[str] = []
        try:
            rule = registry.build(m.key, ctx, retention, settings)
        except KitInputError as err:  # e.g. VisionZip without pixels: its formula below
            rule = None
            notes.append(f"build: {err}")
        figure = None
        if rule is not None and measured:
            try:
                figure = _cuda_peak_bytes(rule, np.array([0]), real.to(device), device), "measured on cuda"
            except Exception as err:  # one method's failure must not lose the others' rows
                notes.append(f"cuda: {_first_line(err)}")
                torch.cuda.empty_cache()
        elif rule is not None:
            figure = accounting.peak(rule, m.key, retention, notes)
        if figure is None:
            formula = _formula_bytes(m.key, shape, seq_len, n, frames, settings.fastv_layer, dtype.itemsize)
            if formula is not None:
                figure = formula[0], "formula"
                notes.append(f"formula: {formula[1]}")
        if figure is not None:
            row |= {"peak_mb": figure[0] / MB, "how": figure[1]}
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
