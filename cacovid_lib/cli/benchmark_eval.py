"""Evaluate a real video LLM with one token-selection method on one real benchmark, streaming its videos.

One job: for every benchmark item (benchmarks.BENCHMARKS), read its video (video_io.read_video, uniform
`num_frames`), encode it with the frozen model, keep video tokens with the method at the retention ratio, answer,
and append one JSON line per item to a results file, so that a killed run resumes where it stopped (items already
in the file are skipped). Returns lmms-eval's accuracy table (benchmarks.accuracy_by_category).

Answering, two modes:
- "generate" (lmms-eval's, the paper's): the item's lmms-eval `prompt` inside the model's own chat template
  (models.loader.chat_template), greedy decoding of at most `max_new_tokens` tokens, benchmarks.parse_answer.
- "loglikelihood" (the kit's): the same prompt, the option with the highest option-text log-likelihood
  (evaluation.option_scores). Cheaper and never unparseable, but not what the paper reports.

The prompt is set without touching the backends (models.base.VideoLLM subclasses): the chat template becomes the
model's `prompt_template` for the run (its `{problem}` = the item's lmms-eval prompt), restored afterwards.

Bad input is refused before the model loads (`preflight`), each a one-line error naming the file, key or item: the
params file's blocks are read into validated dataclasses (an unknown or misspelled key, a wrong type or an out-of-range
value), the benchmark, method, retention, model key or folder, video folder, policy folder and results file are
checked. A video that cannot be read is skipped, not answered: it is listed in the run's summary and left out of the
results file, so that a rerun tries it again.

Also here: the efficiency measurement of one method (selection and prefill time per video, `efficiency_profile`,
which times compare.efficiency.prefill), and the CLI, which can also gather many runs' summaries into the paper's
main and efficiency tables (--collect):

    python -m cacovid_lib.cli.benchmark_eval --params params.gpu.yaml --model llava_onevision_7b --benchmark videomme \\
        --method cacovid --retention 0.25 --out results/llava_onevision_7b/videomme/cacovid-0.25.jsonl
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cacovid_lib.compare import registry
from cacovid_lib.compare.efficiency import median_ms, prefill, timed_s
from cacovid_lib.compare.evaluation import option_scores
from cacovid_lib.compare.keep import Selection
from cacovid_lib.data.benchmarks import BENCHMARKS, accuracy_by_category, parse_answer
from cacovid_lib.data.schema import OPTION_LETTERS, answer_letter
from cacovid_lib.data.video_io import read_video
from cacovid_lib.io_utils import (
    COUNT, RATIO, SEED, KitInputError, Range, append_jsonl, check_ranges, read_jsonl_records, run_cli, write_json_atomic
)
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.loader import ATTENTION, DTYPES, chat_template
from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM
from cacovid_lib.pipeline.params import parse, read_params

ANSWER_MODES = ("generate", "loglikelihood")

# selector(item indices, pixels (B, ...), video embeds (B, N+1, D)) -> Selection
Selector = Callable[[np.ndarray, torch.Tensor, torch.Tensor], Selection]


def methods_for(qwen: bool) -> tuple[str, ...]:
    """The registry's method keys a backend runs: every one on LLaVA-OneVision; on Qwen2.5-VL not the LLaVA-only
    ones (their forwards use LLaVA-OneVision's 1-D positions and SigLIP tower; registry.Method)."""
    return tuple(m.key for m in registry.METHODS if not (qwen and m.llava_only))


def supported_methods(vlm) -> tuple[str, ...]:
    """The registry's method keys this backend (a loaded VideoLLM) runs."""
    return methods_for(isinstance(vlm, Qwen25VLVideoLLM))


def check_method_for(qwen: bool, method: str) -> None:
    """A one-line error unless `method` is a registry key the backend runs (checked from config.json's model_type
    before the model loads, and again on the loaded model)."""
    if method not in methods_for(qwen):
        backend = "Qwen2.5-VL" if qwen else "LLaVA-OneVision"
        raise KitInputError(f"method {method!r}: not supported for {backend}; supported: {', '.join(methods_for(qwen))}")


def check_method(vlm, method: str) -> None:
    check_method_for(isinstance(vlm, Qwen25VLVideoLLM), method)


@contextmanager
def prompt_template(vlm, template: str):
    """`vlm.prompt_template` = `template` inside the block, the model's own afterwards."""
    before = vlm.prompt_template
    vlm.prompt_template = template
    try:
        yield vlm
    finally:
        vlm.prompt_template = before


def prompt_items(items: Sequence[dict]) -> list[dict]:
    """The items with `problem` = their lmms-eval `prompt`, which the chat template wraps (VideoLLM.prompt()
    reads `problem`); one-line errors for items that are not benchmark items or share a problem_id."""
    missing = [it.get("problem_id", "?") for it in items if "prompt" not in it]
    if missing:
        raise KitInputError(f"item {missing[0]}: no lmms-eval 'prompt' field; load benchmark items with benchmarks.BENCHMARKS")
    ids = [str(it["problem_id"]) for it in items]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise KitInputError(f"problem_id {twice!r}: appears more than once; results are kept per problem_id")
    return [dict(it, problem=it["prompt"]) for it in items]


# ---- token selection -----------------------------------------------------------------------------------
def make_selector(vlm, items: list[dict], method: str, retention: float, policy: CompressionPolicy | None = None,
                  imp_ratio: float = 0.5, seed: int = 0, **settings) -> Selector:
    """The registry's method `method` (a key) as a selector over `items` (indices into them). imp_ratio: CaCoVID's;
    seed: Random's; `settings`: any other registry.MethodSettings field, by its own name (fastv_layer,
    temporal_merge_threshold, visionzip_dominant_share, fastvid_threshold, ...). The methods that re-run the vision
    tower read the batch's pixels, which the streaming loop has at hand. A cacovid `policy` is moved to the model's
    device and dtype."""
    check_method(vlm, method)
    if policy is not None:
        policy = policy.to(device=vlm.device, dtype=vlm.model.dtype).eval()
    known = [f.name for f in dataclasses.fields(registry.MethodSettings) if f.name not in ("imp_ratio", "seed")]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise KitInputError(f"method setting {unknown[0]!r}: unknown; known: {', '.join(known)}")
    method_settings = registry.MethodSettings(imp_ratio=imp_ratio, seed=seed, **settings)
    batch_pixels: dict[tuple[int, ...], torch.Tensor] = {}
    ctx = registry.MethodContext(vlm, items, pixels_of=lambda idx: batch_pixels[tuple(int(i) for i in idx)], policy=policy)
    rule = registry.build(method, ctx, retention, method_settings)

    def select(idx, pixels, video_embeds):
        batch_pixels.clear()
        batch_pixels[tuple(int(i) for i in idx)] = pixels
        return rule(idx, video_embeds)

    return select


# ---- answering -----------------------------------------------------------------------------------------
@torch.no_grad()
def generate_pruned_inside(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor,
                           after_layer: int, max_new_tokens: int) -> list[str]:
    """Greedy decoding with FastV's in-LLM pruning (VideoLLM.forward_pruned_inside) at every step, no KV cache, as
    VideoLLM.generate. video_embeds (B, N+1, D), keeps (B, N) -> B strings."""
    prompts = [vlm.prompt(item) for item in items]
    every = torch.ones(video_embeds.shape[1] - 1, dtype=torch.bool)
    starts = [len(p.prefix_ids) for p in prompts]

    def next_logits(outs):
        seqs = [vlm.assemble(p, v, every, o) for p, v, o in zip(prompts, video_embeds, outs)]
        logits, lengths = vlm.forward_pruned_inside(seqs, starts, keeps, after_layer)  # (B, L', V), (B,)
        return logits[torch.arange(len(seqs), device=logits.device), lengths - 1]  # (B, V)

    return vlm.decode_greedy(next_logits, len(items), vlm.stop_ids(), max_new_tokens)


def answer(vlm, items: list[dict], video_embeds: torch.Tensor, sel: Selection, answer_mode: str,
           max_new_tokens: int) -> list[tuple[str | None, object]]:
    """(predicted letter or None, raw output: generated text or option scores) for each item of the batch."""
    if answer_mode == "loglikelihood":
        scores = option_scores(vlm, items, video_embeds, sel).float().cpu()  # (B, options)
        return [(OPTION_LETTERS[int(s.argmax())], [round(float(x), 4) for x in s]) for s in scores]
    video = video_embeds if sel.video_embeds is None else sel.video_embeds.to(video_embeds.device)
    keeps = sel.keeps.to(video_embeds.device)
    if sel.prune_after_layer is None:
        texts = vlm.generate(items, video, keeps, max_new_tokens=max_new_tokens)
    else:
        texts = generate_pruned_inside(vlm, items, video, keeps, sel.prune_after_layer, max_new_tokens)
    return [(parse_answer(it["benchmark"], text, it["options"]), text) for it, text in zip(items, texts)]


@torch.no_grad()
def encode_items(vlm, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode each item's video (uniform num_frames) and encode the batch -> (pixels (B, ...), video embeds (B, N+1, D))."""
    pixels = torch.stack([vlm.preprocess(read_video(item["path"], vlm.num_frames)) for item in items])
    return pixels, vlm.encode_video(pixels)


# what reading a missing, cut-off or undecodable video raises (video_io.read_video: KitInputError; decord's
# DECORDError is a RuntimeError; a file that vanishes or cannot be opened: OSError)
UNREADABLE_VIDEO = (KitInputError, RuntimeError, OSError)


def skipped_video(item: dict, err: Exception) -> dict:
    """The summary's entry for an item whose video could not be read."""
    problem = (str(err).splitlines() or [type(err).__name__])[0]
    return {"problem_id": str(item["problem_id"]), "video": str(item["path"]), "problem": problem}


def decode_readable(vlm, views: list[dict], idx: np.ndarray) -> tuple[np.ndarray, list[torch.Tensor], list[dict]]:
    """(indices whose video was read, their preprocessed frames, skipped_video entries of the others)."""
    readable, frames, skipped = [], [], []
    for i in idx:
        try:
            frames.append(vlm.preprocess(read_video(views[i]["path"], vlm.num_frames)))
            readable.append(int(i))
        except UNREADABLE_VIDEO as err:
            skipped.append(skipped_video(views[i], err))
    return np.array(readable, dtype=int), frames, skipped


@torch.no_grad()
def evaluate_batch(vlm, views: list[dict], idx: np.ndarray, select: Selector, run: dict, max_new_tokens: int,
                   skipped: list[dict] | None = None) -> list[dict]:
    """One JSON record per item of the batch `idx` (indices into `views`) whose video could be read; the others are
    appended to `skipped` (skipped_video entries; a missing `skipped` list: their error is raised)."""
    start = time.perf_counter()
    idx, frames, unreadable = decode_readable(vlm, views, idx)
    if unreadable and skipped is None:
        first = unreadable[0]
        raise KitInputError(f"{first['video']}: item {first['problem_id']}: {first['problem']}")
    if skipped is not None:
        skipped.extend(unreadable)
    if not len(idx):
        return []
    batch = [views[i] for i in idx]
    pixels = torch.stack(frames)
    video_embeds = vlm.encode_video(pixels)
    sel, select_s = timed_s(lambda: select(idx, pixels, video_embeds))  # every GPU the model spans waited for
    answers = answer(vlm, batch, video_embeds, sel, run["answer_mode"], max_new_tokens)
    seconds = (time.perf_counter() - start) / len(idx)
    kept = sel.keeps.sum(-1).tolist()
    return [{"problem_id": str(item["problem_id"]), "benchmark": item["benchmark"], "category": item["category"], **run,
             "predicted": pred, "answer": answer_letter(item), "correct": pred == answer_letter(item),
             "kept_tokens": int(k), "video_tokens": vlm.num_video_tokens, "output": output,
             "select_ms": round(1000 * select_s / len(idx), 3), "seconds": round(seconds, 3)}
            for item, (pred, output), k in zip(batch, answers, kept)]


# ---- the results file ----------------------------------------------------------------------------------
def read_results(out_file, run: dict | None = None) -> dict[str, dict]:
    """problem_id -> record of the items already in `out_file` (JSON lines; io_utils.read_jsonl_records)."""
    return read_jsonl_records(out_file, "problem_id", run)


def run_fields(method: str, retention: float, answer_mode: str) -> dict:
    """The fields every record of one run shares (a results file holds one run)."""
    return {"method": method, "retention": 1.0 if method == "all" else float(retention), "answer_mode": answer_mode}


RECORD_START = '{"problem_id": '  # how every record evaluate_batch writes begins (json.dumps keeps the key order)


def check_results_file(out_file, run: dict | None = None) -> None:
    """Refuse, reading only, an output file that is not a results file of `run`: a folder, a file with a line that is
    not one of the kit's records, or one holding another run. Only a last line cut off while a record was written
    (it begins like one) passes: read_results then drops it and its item is redone. Without this check a one-line
    file of anything else would read as a cut-off record and be emptied."""
    path = Path(out_file)
    if path.is_dir():
        raise KitInputError(f"{path}: is a folder; the output is a results file (JSON lines)")
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) and line.startswith(RECORD_START):
                continue  # a record cut off by a kill
            record = None
        if not isinstance(record, dict) or "problem_id" not in record:
            raise KitInputError(f"{path}: line {n} is not a results record of this kit; choose another output file "
                                f"(this one is left as it is)")
        differ = [k for k in (run or {}) if record.get(k) != run[k]]
        if differ:
            raise KitInputError(f"{path}: holds another run ({differ[0]} {record.get(differ[0])!r}, this run "
                                f"{run[differ[0]]!r}); choose another output file")


# ---- the evaluation ------------------------------------------------------------------------------------
def evaluate_benchmark(vlm, items: Sequence[dict], method: str, retention: float, num_frames: int, out_file,
                       policy: CompressionPolicy | None = None, imp_ratio: float = 0.5, batch_size: int = 1,
                       answer_mode: str = "generate", max_new_tokens: int = 16, template: str | None = None,
                       seed: int = 0, progress: bool = True, **method_kw) -> pd.DataFrame:
    """Evaluate `vlm` (a models.base.VideoLLM: LlavaOneVisionVideoLLM or Qwen25VLVideoLLM) with `method` at `retention` on benchmark `items`,
    appending one JSON line per item to `out_file` and skipping the items already there; returns
    benchmarks.accuracy_by_category over all `items`. template: the prompt template (default:
    models.loader.chat_template(vlm)); method_kw: registry.MethodSettings fields (make_selector's settings).
    Method "all" keeps every token whatever `retention` (recorded as 1.0).

    An item whose video cannot be read (missing, cut off, undecodable) is skipped: no record is written for it (a rerun
    tries it again), the table covers the answered items, and `table.attrs["skipped_videos"]` lists the skipped ones
    (skipped_video entries). Every bad argument is refused before anything is written."""
    if answer_mode not in ANSWER_MODES:
        raise KitInputError(f"answer_mode {answer_mode!r}: expected one of {', '.join(ANSWER_MODES)}")
    if num_frames != vlm.num_frames:
        raise KitInputError(f"num_frames: {num_frames}, but the model was loaded for {vlm.num_frames} frames")
    for name, value in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise KitInputError(f"{name}: {value!r}, expected a whole number of at least 1")
    if method != "all" and (isinstance(retention, bool) or not isinstance(retention, (int, float)) or retention not in RATIO):
        raise KitInputError(f"retention: {retention!r} must be {RATIO}")
    views = prompt_items(items)
    run = run_fields(method, retention, answer_mode)
    out_file = Path(out_file)
    check_results_file(out_file, run)
    with prompt_template(vlm, template or chat_template(vlm)):
        # indices into all items, so seeded methods (random) draw the same mask for an item on a resumed run
        select = make_selector(vlm, views, method, run["retention"], policy, imp_ratio, seed, **method_kw)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        done = read_results(out_file, run)
        todo = np.array([i for i, it in enumerate(views) if str(it["problem_id"]) not in done], dtype=int)
        skipped: list[dict] = []
        with tqdm(total=len(views), initial=len(views) - len(todo), desc=f"{method} {run['retention']}",
                  disable=not progress, mininterval=5) as bar:
            for start in range(0, len(todo), batch_size):
                records = evaluate_batch(vlm, views, todo[start:start + batch_size], select, run, max_new_tokens, skipped)
                if records:  # on disk only once answered: a skipped video's item is not done
                    append_jsonl(out_file, records)
                done.update((r["problem_id"], r) for r in records)
                bar.update(len(todo[start:start + batch_size]))
    answered = [it for it in items if str(it["problem_id"]) in done]
    if not answered:
        first = skipped[0] if skipped else {"video": "?", "problem": "no items"}
        raise KitInputError(f"{first['video']}: none of the {len(items)} items' videos could be read ({first['problem']})")
    table = accuracy_by_category(answered, [done[str(it["problem_id"])]["predicted"] for it in answered])
    table.attrs["skipped_videos"] = skipped
    return table


def benchmark_score(table: pd.DataFrame, benchmark: str) -> float:
    """lmms-eval's headline number: MLVU's mean over its tasks (M-Avg), every other benchmark's overall accuracy."""
    row = "mean over categories" if benchmark.startswith("mlvu") else "overall"
    return float(table[(table["benchmark"] == benchmark) & (table["category"] == row)]["accuracy"].iloc[0])


# ---- efficiency ----------------------------------------------------------------------------------------
@torch.no_grad()
def efficiency_profile(vlm, items: Sequence[dict], method: str, retention: float, policy: CompressionPolicy | None = None,
                       imp_ratio: float = 0.5, repeats: int = 10, template: str | None = None, seed: int = 0,
                       **method_kw) -> dict:
    """The paper's efficiency table for one method: per video, the median time of selecting the tokens
    (compression) and of the prefill with the kept tokens and with every token, each over `repeats` runs after
    warm-up (CUDA synchronised); averaged over `items`. Video decoding and the vision encoder are left out, as
    they are the same for every method."""
    views = prompt_items(items)
    rows = []
    with prompt_template(vlm, template or chat_template(vlm)):
        select = make_selector(vlm, views, method, 1.0 if method == "all" else retention, policy, imp_ratio, seed, **method_kw)
        for i, view in enumerate(tqdm(views, desc=f"timing {method}", mininterval=5)):
            idx = np.array([i])
            pixels, video_embeds = encode_items(vlm, [view])
            sel = select(idx, pixels, video_embeds)
            prompt = vlm.prompt(view)
            every = Selection(torch.ones_like(sel.keeps))
            rows.append({"selection_ms": 0.0 if method == "all" else median_ms(lambda: select(idx, pixels, video_embeds), repeats),
                         "prefill_ms": median_ms(lambda: prefill(vlm, prompt, video_embeds[0], sel), repeats),
                         "prefill_all_tokens_ms": median_ms(lambda: prefill(vlm, prompt, video_embeds[0], every), repeats),
                         "kept_tokens": int(sel.keeps.sum())})
    frame = pd.DataFrame(rows)
    return {"items": len(rows), "repeats": repeats, "device": str(vlm.device), "video_tokens": vlm.num_video_tokens,
            **{k: round(float(frame[k].mean()), 3) for k in frame.columns}}


# ---- gathering runs into the paper's tables ------------------------------------------------------------
def collect(results_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(main table, efficiency table) from every `*.summary.json` under `results_dir`. Main: per model, method and
    retention, each benchmark's score (%), their average, and that average as a share (%) of the same model's
    all-tokens average over the same benchmarks (the paper's "% of upper bound"). Efficiency: the runs measured
    with --efficiency-items."""
    files = sorted(Path(results_dir).rglob("*.summary.json"))
    if not files:
        raise KitInputError(f"{results_dir}: no *.summary.json files (run the evaluations first)")
    summaries = [json.loads(f.read_text()) for f in files]
    keys = ["model", "answer_mode", "method", "retention"]
    scores = pd.DataFrame([{k: s[k] for k in keys + ["benchmark", "score"]} for s in summaries])
    main = scores.pivot_table(index=keys, columns="benchmark", values="score", aggfunc="first").mul(100).reset_index()
    benchmarks = [c for c in main.columns if c not in keys]
    main["average"] = main[benchmarks].mean(axis=1, skipna=False)  # NaN until every benchmark of the row has run
    upper = main[main["method"] == "all"].set_index(["model", "answer_mode"])["average"].to_dict()
    bound = np.array([upper.get((m, mode), np.nan) for m, mode in zip(main["model"], main["answer_mode"])])
    main["share_of_all_tokens"] = 100 * main["average"].to_numpy() / np.where(bound > 0, bound, np.nan)  # no bound: NaN
    main = main.sort_values(["model", "answer_mode", "retention", "average"], ascending=[True, True, False, False])
    timed = [{k: s[k] for k in keys + ["benchmark"]} | s["efficiency"] for s in summaries if "efficiency" in s]
    return main.round(2).reset_index(drop=True), pd.DataFrame(timed)


# ---- the params file (params.gpu.yaml): every block this command reads, validated ----------------------------
PLACEHOLDER = "/path/to/"  # params.gpu.yaml's paths until a user points them at their local copies
BLOCKS_OF_OTHER_COMMANDS = ("policy", "blind_filter")  # read by launch_policy_training and blind_filter, not here


def _check_given(obj, **ranges: Range) -> None:
    """check_ranges for the fields that are set (None: not in the params file)."""
    check_ranges(obj, **{name: allowed for name, allowed in ranges.items() if getattr(obj, name) is not None})


def _one_of(name: str, value, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise KitInputError(f"{name}: {value!r} is not valid; valid: {', '.join(choices)}")


@dataclass
class ModelEntry:
    """`models.<key>`: a model of the GPU profile (its key stands for --model). A field left out: the command line's,
    else DEFAULTS."""

    path: str | None = None
    """the model's local folder (llava-hf or Qwen layout), or a hub id already in the local Hugging Face cache"""
    policy: str | None = None
    """the kit policy folder method cacovid runs (policy.save_policy / release_import)"""
    dtype: str | None = None
    """float32, bfloat16 or float16 (models.loader.DTYPES)"""
    attn_implementation: str | None = None
    """sdpa, eager or flash_attention_2 (models.loader.ATTENTION)"""
    frame_size: list[int] | None = None
    """Qwen2.5-VL only: [height, width] every frame is resized to"""
    prompt_template: str | None = None
    """overrides the model's chat template; must hold {problem} and the video marker"""

    def __post_init__(self):
        if self.path is None:
            raise KitInputError("path: required (the model's local folder)")
        _one_of("dtype", self.dtype, tuple(DTYPES))
        _one_of("attn_implementation", self.attn_implementation, ATTENTION)
        if self.frame_size is not None and len(self.frame_size) != 2:
            raise KitInputError(f"frame_size: expected [height, width], got {self.frame_size!r}")
        _check_given(self, frame_size=COUNT)


@dataclass
class BenchmarkEntry:
    """`benchmarks.<name>` (a key of benchmarks.BENCHMARKS): where the benchmark is on disk."""

    annotations: str | None = None
    """the annotation file or folder (data/benchmarks.py documents each layout)"""
    video_root: str | None = None
    """the benchmark's video folder"""


@dataclass
class EvaluationParams:
    """`evaluation`: the settings every evaluation run shares. The block also holds the registry's method settings
    (compare.registry.MethodSettings fields, by their own names), checked by that dataclass."""

    retention_ratios: list[float] | None = None
    """the main table's retention ratios (a run takes one, --retention)"""
    methods: list[str] | None = None
    """the main table's methods (keys of the method registry; a run takes one, --method)"""
    imp_ratio: float | None = None
    """CaCoVID's share of each frame's budget given to the policy's top-k"""
    answer_mode: str | None = None
    """generate (lmms-eval's, the paper's) or loglikelihood (the kit's option scoring)"""
    max_new_tokens: int | None = None
    """greedy generation length"""
    batch_size: int | None = None
    """items answered together"""
    seed: int | None = None
    """the random baseline's masks"""
    prompt_template: str | None = None
    """overrides the model's chat template"""
    efficiency_items: int | None = None
    """also time selection and prefill on the first N items (0: not)"""
    timing_repeats: int | None = None
    """median of this many runs per timed item"""

    def __post_init__(self):
        _one_of("answer_mode", self.answer_mode, ANSWER_MODES)
        for i, method in enumerate(self.methods or []):
            _one_of(f"methods[{i}]", method, [m.key for m in registry.METHODS])
        _check_given(self, retention_ratios=RATIO, imp_ratio=RATIO, max_new_tokens=COUNT, batch_size=COUNT, seed=SEED,
                     efficiency_items=SEED, timing_repeats=COUNT)


@dataclass
class EfficiencyParams:
    """`efficiency`: the efficiency table's runs (docs/method.md §6)."""

    retention: float | None = None
    benchmark: str | None = None
    items: int | None = None
    repeats: int | None = None
    methods: list[str] | None = None

    def __post_init__(self):
        _one_of("benchmark", self.benchmark, sorted(BENCHMARKS))
        for i, method in enumerate(self.methods or []):
            _one_of(f"methods[{i}]", method, [m.key for m in registry.METHODS])
        _check_given(self, retention=RATIO, items=COUNT, repeats=COUNT)


def method_setting_names() -> list[str]:
    """The registry.MethodSettings fields an `evaluation` block may set (imp_ratio and seed are run settings)."""
    return [f.name for f in dataclasses.fields(registry.MethodSettings) if f.name not in ("imp_ratio", "seed")]


def check_evaluation_block(block, where: str = "evaluation") -> None:
    """An `evaluation` block: every key an EvaluationParams or a registry.MethodSettings field (an unknown key is
    refused with the valid ones listed), each value of its type and range."""
    if not isinstance(block, dict):
        raise KitInputError(f"{where}: expected a mapping of settings, got {block!r}")
    run_keys = [f.name for f in dataclasses.fields(EvaluationParams)]
    setting_keys = method_setting_names()
    unknown = sorted(set(block) - set(run_keys) - set(setting_keys))
    if unknown:
        raise KitInputError(f"{where}.{unknown[0]}: unknown parameter; valid: {', '.join(sorted(run_keys + setting_keys))}")
    parse(EvaluationParams, {k: v for k, v in block.items() if k in run_keys}, where)
    parse(registry.MethodSettings, {k: v for k, v in block.items() if k in setting_keys}, where)


def check_gpu_params(params: dict) -> None:
    """The blocks of a GPU-profile params file this command reads, each parsed into its dataclass; the blocks of other
    commands only named. One-line errors `block.key: problem`."""
    known = ("num_frames", "models", "benchmarks", "evaluation", "efficiency") + BLOCKS_OF_OTHER_COMMANDS
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise KitInputError(f"{unknown[0]}: unknown block; valid: {', '.join(known)}")
    frames = params.get("num_frames")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise KitInputError(f"num_frames: {frames!r}, expected a whole number of at least 1")
    for block, cls in (("models", ModelEntry), ("benchmarks", BenchmarkEntry)):
        entries = params.get(block) or {}
        if not isinstance(entries, dict):
            raise KitInputError(f"{block}: expected a mapping of name -> entry, got {entries!r}")
        for name, entry in entries.items():
            if block == "benchmarks" and name not in BENCHMARKS:
                raise KitInputError(f"benchmarks.{name}: not a benchmark; valid: {', '.join(sorted(BENCHMARKS))}")
            parse(cls, entry, f"{block}.{name}")
    check_evaluation_block(params.get("evaluation") or {})
    if params.get("efficiency") is not None:
        parse(EfficiencyParams, params["efficiency"], "efficiency")


def read_gpu_params(path) -> dict:
    """A GPU-profile params file (params.gpu.yaml), checked by check_gpu_params: its mapping as written, or one line
    `<file>: block.key: problem`."""
    params = read_params(path)
    try:
        check_gpu_params(params)
    except KitInputError as err:
        raise KitInputError(f"{path}: {err}") from None
    return params


# ---- command line --------------------------------------------------------------------------------------
def _whole_number(low: int):
    """An argparse type: a whole number of at least `low`."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be at least {low}")
        return value
    return whole_number


def _ratio(text: str) -> float:
    """An argparse type: a ratio in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value not in RATIO:
        raise argparse.ArgumentTypeError(f"{text} must be {RATIO}")
    return value


def _parser() -> argparse.ArgumentParser:
    count, non_negative = _whole_number(1), _whole_number(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", help="a GPU-profile params file (params.gpu.yaml): defaults for everything below")
    p.add_argument("--model", help="model folder, or a key of the params file's models")
    p.add_argument("--benchmark", help="one of benchmarks.BENCHMARKS: " + ", ".join(sorted(BENCHMARKS)))
    p.add_argument("--annotations", help="the benchmark's annotation file or folder (data/benchmarks.py names each)")
    p.add_argument("--video-root", help="the benchmark's video folder")
    p.add_argument("--method", help="a key of the method registry: " + ", ".join(
        m.key + (" (LLaVA-OneVision only)" if m.llava_only else "") for m in registry.METHODS))
    p.add_argument("--retention", type=_ratio, default=None, help="retention ratio in (0, 1]; method all: 1")
    p.add_argument("--policy", help="policy folder (policy.save_policy / release_import), for method cacovid")
    p.add_argument("--num-frames", type=count)
    p.add_argument("--dtype", choices=tuple(DTYPES))
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--attn-implementation", choices=ATTENTION)
    p.add_argument("--frame-size", type=count, nargs=2, metavar=("H", "W"), help="Qwen2.5-VL only: frames resized to H x W")
    p.add_argument("--imp-ratio", type=_ratio)
    p.add_argument("--answer-mode", choices=ANSWER_MODES)
    p.add_argument("--max-new-tokens", type=count)
    p.add_argument("--batch-size", type=count)
    p.add_argument("--prompt-template", help="override the chat template; must hold {problem} and the video marker")
    p.add_argument("--limit", type=count, help="only the first N items (smoke runs), N at least 1")
    p.add_argument("--efficiency-items", type=non_negative, help="also time selection and prefill on the first N items")
    p.add_argument("--timing-repeats", type=count)
    p.add_argument("--seed", type=non_negative)
    p.add_argument("--out", help="results file (JSON lines); default results/<model>/<benchmark>/<method>-<retention>.jsonl")
    p.add_argument("--collect", metavar="DIR", help="only gather DIR's *.summary.json into the main and efficiency tables")
    return p


DEFAULTS = {"num_frames": 32, "dtype": "bfloat16", "attn_implementation": "sdpa", "imp_ratio": 0.5, "answer_mode": "generate",
            "max_new_tokens": 16, "batch_size": 1, "efficiency_items": 0, "timing_repeats": 10, "seed": 0}


def method_settings(evaluation: dict) -> dict:
    """make_selector's keyword settings from a params file's `evaluation` block: its registry.MethodSettings fields
    (fastv_layer, temporal_merge_threshold, fastvid_threshold, ...), by their own names; imp_ratio and seed are run
    settings of their own."""
    fields = set(method_setting_names())
    return {k: v for k, v in evaluation.items() if k in fields}


def _model_entry(name: str, params: dict, params_file) -> tuple[dict, str]:
    """(model entry, where its path comes from): the params file's `models.<name>`, else `name` as a folder or hub
    id. A name that is neither a key nor a path (no folder of that name, no '/') is a one-line error listing the keys."""
    models = params.get("models") or {}
    if name in models:
        return models[name], f"{params_file}: models.{name}.path"
    if not Path(name).expanduser().exists() and "/" not in name:
        if params_file:
            raise KitInputError(f"--model {name}: not a key of `models` in {params_file} (valid: "
                                f"{', '.join(models) or 'none'}) and not a model folder")
        raise KitInputError(f"--model {name}: not a model folder (a key of a params file's `models` needs --params)")
    return {"path": name}, "--model"


def resolve(args: argparse.Namespace) -> dict:
    """The run's settings: the command line, else the params file (its model entry, benchmark entry and
    `evaluation` block, and `num_frames`), else DEFAULTS. The params file is validated first (read_gpu_params), then
    the benchmark, the method, the model key and every path left a placeholder."""
    params = read_gpu_params(args.params) if args.params else {}
    for flag in ("model", "benchmark", "method"):
        if getattr(args, flag) is None:
            raise KitInputError(f"--{flag}: required (or --collect DIR)")
    if args.benchmark not in BENCHMARKS:
        raise KitInputError(f"--benchmark {args.benchmark}: not a benchmark; valid: {', '.join(sorted(BENCHMARKS))}")
    method_keys = [m.key for m in registry.METHODS]
    if args.method not in method_keys:
        raise KitInputError(f"--method {args.method}: not a key of the method registry; valid: {', '.join(method_keys)}")
    model, model_path_from = _model_entry(args.model, params, args.params)
    bench = (params.get("benchmarks") or {}).get(args.benchmark) or {}
    evaluation = params.get("evaluation") or {}
    given = {k: v for k, v in vars(args).items() if v is not None}
    top = {"num_frames": params["num_frames"]} if "num_frames" in params else {}  # the only run setting at the top level
    # first found: command line, model entry, benchmark entry, evaluation block, top level, DEFAULTS
    sources = [(None, given), (f"models.{args.model}", model), (f"benchmarks.{args.benchmark}", bench),
               ("evaluation", evaluation), ("", top), ("default", DEFAULTS)]

    def pick(key):
        return next((d[key] for _, d in sources if key in d), None)

    def where(key) -> str:  # the flag or the params key a setting came from
        block = next((b for b, d in sources if key in d), None)
        return f"--{key.replace('_', '-')}" if block is None else f"{args.params}: {block}.{key}"

    settings = {key: pick(key) for key in ("annotations", "video_root", "policy", "num_frames", "dtype", "attn_implementation",
                                           "frame_size", "imp_ratio", "answer_mode", "max_new_tokens", "batch_size", "prompt_template",
                                           "limit", "efficiency_items", "timing_repeats", "seed", "device")}
    settings.update(model_path=model["path"], model=args.model, benchmark=args.benchmark, method=args.method,
                    retention=1.0 if args.method == "all" else args.retention,
                    method_kw=method_settings(evaluation))
    if settings["retention"] is None:
        raise KitInputError(f"--retention: required for method {args.method}")
    for key in ("annotations", "video_root"):
        if settings[key] is None:
            raise KitInputError(f"--{key.replace('_', '-')}: required (or a benchmarks.{args.benchmark} entry in --params)")
    paths = [(model_path_from, settings["model_path"]), (where("annotations"), settings["annotations"]),
             (where("video_root"), settings["video_root"])]
    if args.method == "cacovid" and settings["policy"]:
        paths.append((where("policy"), settings["policy"]))
    for source, value in paths:
        if str(value).startswith(PLACEHOLDER):
            raise KitInputError(f"{source}: {value} is a placeholder; replace the placeholder with the path of your local copy")
    name = args.model if args.model in (params.get("models") or {}) else Path(args.model).name
    settings["model"] = name
    settings["out"] = Path(args.out or f"results/{name}/{args.benchmark}/{args.method}-{settings['retention']}.jsonl")
    return settings


def preflight(settings: dict) -> list[dict]:
    """Every check that needs no model, before minutes of loading one: dtype and attention, the model folder and its
    type, the method on that backend, the policy folder (method cacovid), the benchmark's annotations and video folder,
    and the results file. Returns the benchmark's items (the first `limit`). Videos missing from the folder are
    reported on stderr (they will be skipped); none there at all is an error."""
    from cacovid_lib.models.loader import check_attention, check_dtype, model_type, resolve_model_folder

    check_dtype(settings["dtype"])
    check_attention(settings["attn_implementation"])
    kind = model_type(resolve_model_folder(settings["model_path"]))
    check_method_for(kind == "qwen2_5_vl", settings["method"])
    if settings["frame_size"] and kind != "qwen2_5_vl":
        raise KitInputError("frame_size: applies to qwen2_5_vl only; LLaVA-OneVision frames are resized to its vision "
                            "tower's image_size")
    if settings["method"] == "cacovid":
        if not settings["policy"]:
            raise KitInputError("--policy: required for method cacovid")
        policy = Path(settings["policy"])
        if not (policy / "policy_config.json").is_file() or not (policy / "policy.safetensors").is_file():
            raise KitInputError(f"{policy}: not a policy checkpoint (needs policy.safetensors and policy_config.json)")
    video_root = Path(settings["video_root"]).expanduser()
    if not video_root.is_dir():
        raise KitInputError(f"{video_root}: video folder not found")
    items = BENCHMARKS[settings["benchmark"]](settings["annotations"], video_root)[:settings["limit"]]
    if not items:
        raise KitInputError(f"{settings['annotations']}: no {settings['benchmark']} items in it")
    missing = [it["path"] for it in items if not Path(it["path"]).is_file()]
    if len(missing) == len(items):
        raise KitInputError(f"{video_root}: none of the {len(items)} items' videos is here (the first expected: "
                            f"{missing[0]}); is it the benchmark's video folder?")
    if missing:
        print(f"warning: {video_root}: {len(missing)} of the {len(items)} items' videos are missing (the first: "
              f"{missing[0]}); they will be skipped and listed in the summary", file=sys.stderr)
    check_results_file(settings["out"], run_fields(settings["method"], settings["retention"], settings["answer_mode"]))
    return items


def run(settings: dict) -> dict:
    """Check (preflight), load, evaluate, optionally time; write the summary next to the results file and return it."""
    from cacovid_lib.method.policy import load_policy
    from cacovid_lib.models.loader import load_video_llm

    items = preflight(settings)
    device = settings["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    frame_size = tuple(settings["frame_size"]) if settings["frame_size"] else None
    vlm = load_video_llm(settings["model_path"], settings["num_frames"], device=device, dtype=settings["dtype"],
                         attn_implementation=settings["attn_implementation"], frame_size=frame_size)
    policy = None
    if settings["method"] == "cacovid":
        policy = load_policy(settings["policy"], vlm.language_model).to(vlm.device).eval()
    common = dict(policy=policy, imp_ratio=settings["imp_ratio"], template=settings["prompt_template"], seed=settings["seed"],
                  **settings["method_kw"])
    table = evaluate_benchmark(vlm, items, settings["method"], settings["retention"], settings["num_frames"], settings["out"],
                               batch_size=settings["batch_size"], answer_mode=settings["answer_mode"],
                               max_new_tokens=settings["max_new_tokens"], **common)
    skipped = table.attrs.get("skipped_videos", [])
    records = read_results(settings["out"])
    summary = {"model": settings["model"], "model_path": str(settings["model_path"]), "benchmark": settings["benchmark"],
               "method": settings["method"], "retention": settings["retention"], "num_frames": settings["num_frames"],
               "answer_mode": settings["answer_mode"], "imp_ratio": settings["imp_ratio"], "dtype": settings["dtype"],
               "device": device, "policy": settings["policy"], "items": len(items),
               "answered": sum(str(it["problem_id"]) in records for it in items),
               "skipped": len(skipped),  # items whose video could not be read: not answered, not in the results file
               "skipped_videos": skipped,  # (a rerun tries them again), each with its video and what was wrong
               "score": benchmark_score(table, settings["benchmark"]),
               "mean_kept_tokens": float(np.mean([r["kept_tokens"] for r in records.values()])),
               "mean_select_ms": float(np.mean([r["select_ms"] for r in records.values()])),
               "mean_seconds_per_item": float(np.mean([r["seconds"] for r in records.values()])),
               "prompt_template": settings["prompt_template"] or chat_template(vlm),
               "table": table.round(4).to_dict(orient="records")}
    if settings["efficiency_items"]:
        timed = [it for it in items if str(it["problem_id"]) in records][:settings["efficiency_items"]]
        summary["efficiency"] = efficiency_profile(vlm, timed, settings["method"],
                                                   settings["retention"], repeats=settings["timing_repeats"], **common)
    write_json_atomic(settings["out"].with_suffix(".summary.json"), summary)
    return summary


def main(argv=None) -> int:
    args = _parser().parse_args(argv)

    def body() -> int:
        if args.collect:
            main_table, efficiency = collect(args.collect)
            main_table.to_csv(Path(args.collect) / "main_table.csv", index=False)
            print(main_table.to_markdown(index=False))
            if len(efficiency):
                efficiency.to_csv(Path(args.collect) / "efficiency_table.csv", index=False)
                print("\n" + efficiency.to_markdown(index=False))
            return 0
        settings = resolve(args)
        summary = run(settings)
        print(pd.DataFrame(summary["table"]).to_markdown(index=False))
        print(f"\nscore {100 * summary['score']:.2f} ({summary['benchmark']}, {summary['method']} at retention "
              f"{summary['retention']}); results in {settings['out']}")
        if summary["skipped_videos"]:
            print(f"skipped {len(summary['skipped_videos'])} of {summary['items']} items whose video could not be read "
                  f"(listed in {settings['out'].with_suffix('.summary.json')}; the score is over the "
                  f"{summary['answered']} answered); a rerun tries them again", file=sys.stderr)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
