"""The efficiency profile at real size: prefill and every registered method's selection time on 7B-shaped models.

One job: build a LLaVA-OneVision-7B-shaped and a Qwen2.5-VL-7B-shaped model with random weights (no download;
the language model has Qwen2-7B's shape, the vision tower is tiny because it never runs), give them random
video-token embeddings of `frames` x `tokens_per_frame` tokens and a `text_tokens`-token prompt, and time, through
the kit's own adapters and the method registry:
- the prefill with every video token, and with floor(rho*N) kept tokens at each retention ratio rho;
- each registered method's selection at each ratio (CaCoVID: a random-weight policy, i.e. its decoder layer and
  heads, plus the selection rule; DivPrune's greedy loop; FastV's score pass; every other method of
  `registry.METHODS`), and the prefill of a method whose selection prunes inside the LLM (FastV);
- CUDA's allocator peak per row (on CPU the process's peak resident set, see efficiency.peak_memory_mb).
Times are medians over `repeats` runs after warm-up, CUDA synchronised (efficiency.median_ms). A method that needs
what random embeddings cannot give (pixels for the vision tower) or that the registry marks LLaVA-only on the Qwen
model is a row with its reason instead of a time.

The video tokens are random but redundant in time as real video is: each position's token is one random vector
plus fresh noise per frame, with consecutive frames' tokens at cosine similarity `frame_similarity`, so the
merging methods find something to merge (with independent tokens they would merge nothing and look too cheap).
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare import registry
from cacovid_lib.compare.baselines import token_budget
from cacovid_lib.compare.efficiency import QWEN2_7B, LLMShape, median_ms_and_peak_mb, prefill, prefill_flops, timed_s
from cacovid_lib.compare.keep import Selection
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.models.base import VideoLLM


@dataclass(frozen=True)
class ModelSpec:
    """One profiled model: its table name, its backend (which transformers class and kit adapter), its LLM's shape."""

    name: str
    backend: str  # "llava_onevision" or "qwen2_5_vl"
    shape: LLMShape


TINY_SHAPE = LLMShape(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=0)

MODELS: dict[str, list[ModelSpec]] = {
    "llava_onevision_7b": [ModelSpec("LLaVA-OneVision-7B", "llava_onevision", QWEN2_7B)],
    "qwen2_5_vl_7b": [ModelSpec("Qwen2.5-VL-7B", "qwen2_5_vl", QWEN2_7B)],
    "tiny": [ModelSpec("tiny LLaVA-OneVision", "llava_onevision", TINY_SHAPE),
             ModelSpec("tiny Qwen2.5-VL", "qwen2_5_vl", TINY_SHAPE)],
}
TABLE_COLUMNS = ["model", "measurement", "method", "retention", "llm_video_tokens", "median_ms", "peak_memory_mb",
                 "share_of_all_token_prefill", "analytic_tflops", "repeats", "note"]
MAX_ROW_SECONDS = 10.0  # a slow row (a Python-loop method at real size) is timed fewer times (at least once)


# ---- models with random weights ------------------------------------------------------------------------------------
PROMPT_WORDS = "what colour is the circle ? red blue green yellow a b c d . : , answer options user assistant".split()
LLAVA_SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
QWEN_SPECIALS = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|video_pad|>", "<|image_pad|>"]


def word_tokenizer(specials: list[str]):
    """A word-level tokenizer over `specials` (pad, unk, then the chat template's tokens, matched before splitting as
    in the real tokenizers) and PROMPT_WORDS; any other word is one <unk>. One token per word or punctuation mark,
    so a prompt's length is exact. (The embedded world's tokenizer would do as well, but compare/ does not import
    embedded/.)"""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pad, unk = specials[:2]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(dict.fromkeys(specials + PROMPT_WORDS))}, unk_token=unk))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, unk_token=unk, eos_token="<|im_end|>",
                                   extra_special_tokens=specials[2:])


def _text_config(shape: LLMShape, tokenizer) -> dict:
    return dict(vocab_size=shape.vocab or len(tokenizer), hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                max_position_embeddings=32768, tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=None)


def _instantiate(model_class, config, device, dtype):
    """Random weights made where they will live (on a GPU: no 30 GB float32 detour through the CPU)."""
    with torch.device(device):
        return model_class._from_config(config, dtype=dtype).eval()


def build_llava_onevision(shape: LLMShape, grid_side: int, num_frames: int, device, dtype) -> VideoLLM:
    """LlavaOnevisionForConditionalGeneration with a Qwen2 LLM of `shape` and a one-layer SigLIP of width 32 whose
    patch grid pools to grid_side x grid_side video tokens per frame (the adapter reads its grid from it)."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config, SiglipVisionConfig

    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    tokenizer = word_tokenizer(LLAVA_SPECIALS)
    patch = 14  # SigLIP's; 2 * side patches pool 2x2 to side tokens
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
                                image_size=2 * grid_side * patch, patch_size=patch, vision_use_head=False)
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config=Qwen2Config(**_text_config(shape, tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", tie_word_embeddings=False,
        image_grid_pinpoints=[[vision.image_size, vision.image_size]])
    model = _instantiate(LlavaOnevisionForConditionalGeneration, config, device, dtype)
    return LlavaOneVisionVideoLLM(model, tokenizer, num_frames=num_frames)


def build_qwen2_5_vl(shape: LLMShape, grid_side: int, num_frames: int, device, dtype) -> VideoLLM:
    """Qwen2_5_VLForConditionalGeneration with an LLM of `shape` (Qwen2.5-VL-7B's multimodal rotary sections) and a
    one-block vision tower; 2 * num_frames frames of 28 * grid_side pixels give the adapter the grid
    (num_frames, grid_side, grid_side) and the model's own rotary ids for it."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM

    tokenizer = word_tokenizer(QWEN_SPECIALS)
    ids = tokenizer.convert_tokens_to_ids
    head_dim = shape.hidden // shape.heads
    section = [head_dim // 8, head_dim * 3 // 16, head_dim * 3 // 16]  # Qwen2.5-VL-7B: [16, 24, 24] of 128 / 2
    section[0] += head_dim // 2 - sum(section)
    text = _text_config(shape, tokenizer) | {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                                   "mrope_section": section}}
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=1, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, out_hidden_size=shape.hidden, window_size=112, fullatt_block_indexes=[0],
                           tokens_per_second=2),
        text_config=text, image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False)
    model = _instantiate(Qwen2_5_VLForConditionalGeneration, config, device, dtype)
    side = 28 * grid_side  # patch 14 x merge 2
    return Qwen25VLVideoLLM(model, tokenizer, num_frames=2 * num_frames, frame_size=(side, side))


BUILDERS = {"llava_onevision": build_llava_onevision, "qwen2_5_vl": build_qwen2_5_vl}


# ---- inputs ----------------------------------------------------------------------------------------------------------
def redundant_video_embeds(grid: tuple[int, int, int], dim: int, frame_similarity: float, scale: float,
                           generator: torch.Generator) -> torch.Tensor:
    """Random video-token embeddings (t*h*w + 1, dim), time-then-space order, the last one the never-pruned end
    token: token (f, p) = scale * (scene_p + sigma * noise_fp) / sqrt(1 + sigma^2), with sigma chosen so that
    the same position in two frames has expected cosine similarity `frame_similarity` (in [0, 1))."""
    if not 0 <= frame_similarity < 1:
        raise KitInputError(f"frame_similarity: {frame_similarity} is outside [0, 1)")
    t, h, w = grid
    sigma = math.sqrt(1 / frame_similarity - 1) if frame_similarity > 0 else 0.0
    scene = torch.randn(1, h * w, dim, generator=generator, device=generator.device)  # (1, hw, D) what each position shows
    noise = torch.randn(t, h * w, dim, generator=generator, device=generator.device)  # (t, hw, D) what changes from frame to frame
    video = scene + sigma * noise if frame_similarity > 0 else noise  # (t, hw, D)
    end = torch.randn(1, dim, generator=generator, device=generator.device) * math.sqrt(1 + sigma**2)  # (1, D)
    return torch.cat([video.reshape(t * h * w, dim), end]) * scale / math.sqrt(1 + sigma**2)


def padded_item(vlm: VideoLLM, text_tokens: int) -> dict:
    """A four-option question whose prompt (text before plus after the video) is exactly `text_tokens` tokens:
    the question is padded with one in-vocabulary word."""
    item = {"problem": "what colour is the circle ?", "options": ["A. red", "B. blue", "C. green", "D. yellow"]}
    prompt = vlm.prompt(item)
    base = len(prompt.prefix_ids) + len(prompt.suffix_ids)
    if text_tokens < base:
        raise KitInputError(f"--text-tokens: {text_tokens} is below the prompt template's own {base} tokens")
    item["problem"] += " colour" * (text_tokens - base)
    prompt = vlm.prompt(item)
    assert len(prompt.prefix_ids) + len(prompt.suffix_ids) == text_tokens, "the padding word is not one token"
    return item


# ---- timing ----------------------------------------------------------------------------------------------------------
def _timed_row(fn, device, repeats: int) -> dict:
    """Median time and peak memory of fn() over `repeats` runs after warm-up; a slow call (a Python loop at real
    size) is timed fewer times, so that a row takes about MAX_ROW_SECONDS at most after its first call."""
    _, first_s = timed_s(fn, device)  # the warm-up (kernels, caches, the allocator); it also tells how slow a call is
    n = repeats if first_s * repeats <= MAX_ROW_SECONDS else max(1, int(MAX_ROW_SECONDS / first_s))
    ms, peak = median_ms_and_peak_mb(fn, device, repeats=n, warmup=1 if first_s < 1 else 0)
    return {"median_ms": ms, "peak_memory_mb": peak, "repeats": n}


def _free_cuda_cache(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _error_note(err: Exception, device) -> str:
    """'error: <type>: <first line>' for the table; frees what the failed call left in CUDA's cache."""
    _free_cuda_cache(device)
    lines = str(err).splitlines() or [""]
    return f"error: {type(err).__name__}: {lines[0][:160]}"


def _skip_reason(method: registry.Method, spec: ModelSpec) -> str | None:
    if method.llava_only and spec.backend != "llava_onevision":
        return "skipped: LLaVA-OneVision only (registry: reads its 1-D positions or SigLIP attention)"
    return None


@torch.no_grad()
def profile_model(spec: ModelSpec, frames: int, tokens_per_frame: int, text_tokens: int, ratios: list[float],
                  repeats: int, device, seed: int = 0, frame_similarity: float = 0.92) -> pd.DataFrame:
    """Every row of the profile for one model (TABLE_COLUMNS); the model dies with this call's locals."""
    side = math.isqrt(tokens_per_frame)
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(seed)
    start = time.perf_counter()
    vlm = BUILDERS[spec.backend](spec.shape, side, frames, device, dtype)
    build_s = time.perf_counter() - start
    weights_mb = sum(p.numel() * p.element_size() for p in vlm.model.parameters()) / 2**20
    assert vlm.grid == (frames, side, side), f"adapter grid {vlm.grid}"
    n = vlm.num_video_tokens
    generator = torch.Generator().manual_seed(seed)
    scale = vlm.model.config.text_config.initializer_range  # the size of the random word embeddings
    video = redundant_video_embeds(vlm.grid, spec.shape.hidden, frame_similarity, scale, generator).to(device, dtype)  # (N+1, D)
    item = padded_item(vlm, text_tokens)
    prompt = vlm.prompt(item)
    policy = CompressionPolicy.from_llm(vlm.language_model, seed=seed).to(device).eval()
    ctx = registry.MethodContext(vlm=vlm, items=[item], policy=policy)  # no pixels_of: the tower never runs
    idx, batch = np.array([0]), video[None]  # (1, N+1, D)
    rows: list[dict] = []

    text_len = len(prompt.prefix_ids) + len(prompt.suffix_ids) + 1  # the prompt and the never-pruned end token

    def add(measurement, method, retention, llm_tokens, fn=None, note="", pruned_after=None):
        row = {"model": spec.name, "measurement": measurement, "method": method, "retention": retention,
               "llm_video_tokens": llm_tokens, "median_ms": float("nan"), "peak_memory_mb": float("nan"), "repeats": 0,
               "analytic_tflops": float("nan"), "note": note}
        if measurement == "prefill":
            row["analytic_tflops"] = prefill_tflops(spec.shape, n + text_len, llm_tokens + text_len, pruned_after)
        if fn is not None:
            try:
                row |= _timed_row(fn, device, repeats)
            except Exception as err:  # one row's failure (out of memory, a method's bug) must not lose the others
                row["note"] = _error_note(err, device)
        rows.append(row)

    add("prefill", "All tokens", 1.0, n, lambda: prefill(vlm, prompt, video, Selection(torch.ones(1, n, dtype=torch.bool, device=device))),
        note=f"{dtype} weights {weights_mb:,.1f} MiB (peaks are over them), built in {build_s:.1f} s")
    for r in ratios:
        k = token_budget(n, r)
        keep = Selection(torch.arange(n, device=device)[None] < k)  # (1, N): the count is what costs, not which tokens
        add("prefill", "kept tokens", r, k, lambda keep=keep: prefill(vlm, prompt, video, keep))
    for method in registry.compressing_methods():
        for r in ratios:
            reason = _skip_reason(method, spec)
            if reason:
                add("selection", method.name, r, None, note=reason)
                continue
            try:
                rule = registry.build(method.key, ctx, r)
                selection = rule(idx, batch)  # also checks that the method can run without pixels
            except KitInputError as err:
                add("selection", method.name, r, None, note=f"skipped: {err}")
                continue
            except Exception as err:  # a method that fails here is reported, and the others are still measured
                add("selection", method.name, r, None, note=_error_note(err, device))
                continue
            kept = int(selection.keeps[0].sum())
            add("selection", method.name, r, kept, lambda rule=rule: rule(idx, batch), note=method.paper)
            if selection.prune_after_layer is not None:  # its prefill differs from the kept-token one
                add("prefill", method.name, r, kept, lambda s=selection: prefill(vlm, prompt, video, s),
                    note=f"every token through layers 0..{selection.prune_after_layer}, then the kept ones",
                    pruned_after=selection.prune_after_layer)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.sort_values("measurement", kind="stable", key=lambda m: m != "prefill", ignore_index=True)  # prefills first
    full_ms = float(table.loc[0, "median_ms"])
    table["share_of_all_token_prefill"] = table["median_ms"] / full_ms
    return table


def profile(models: list[str], frames: int = 32, tokens_per_frame: int = 196, text_tokens: int = 128,
            ratios: tuple[float, ...] = (0.25, 0.1), repeats: int = 10, device=None, seed: int = 0) -> pd.DataFrame:
    """The profile of every model named (keys of MODELS), one after the other, as one table (TABLE_COLUMNS)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise KitInputError(f"--model: {unknown[0]!r} is unknown; choose from {', '.join(MODELS)}")
    if frames < 1 or repeats < 1:
        raise KitInputError(f"--frames {frames} / --repeats {repeats}: must be at least 1")
    if tokens_per_frame < 1 or math.isqrt(tokens_per_frame) ** 2 != tokens_per_frame:
        raise KitInputError(f"--tokens-per-frame: {tokens_per_frame} is not a square (h = w tokens per frame)")
    for r in ratios:
        token_budget(1, r)  # (0, 1] or a one-line error
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tables = []
    for spec in [spec for key in models for spec in MODELS[key]]:
        try:
            tables.append(profile_model(spec, frames, tokens_per_frame, text_tokens, list(ratios), repeats, device, seed))
        except KitInputError:
            raise
        except Exception as err:  # e.g. a model that does not fit: the other model's rows are still worth having
            tables.append(pd.DataFrame([{"model": spec.name, "measurement": "build", "method": "", "repeats": 0,
                                         "note": _error_note(err, device)}], columns=TABLE_COLUMNS))
        _free_cuda_cache(device)  # the next 15 GB model needs the first one's memory
    return pd.concat(tables, ignore_index=True)


def prefill_tflops(shape: LLMShape, full_len: int, kept_len: int, pruned_after: int | None = None) -> float:
    """Analytic TFLOPs of a prefill (efficiency.prefill_flops) over kept_len tokens; with `pruned_after` (FastV),
    layers 0..pruned_after run over all full_len tokens and the rest over the kept ones."""
    if pruned_after is None:
        return prefill_flops(shape, kept_len) / 1e12
    early = pruned_after + 1
    return (prefill_flops(shape, full_len, layers=early) + prefill_flops(shape, kept_len, layers=shape.layers - early)) / 1e12
