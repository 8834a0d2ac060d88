"""Answering a real benchmark with a video LLM and one token-selection method: the pieces every paper evaluation shares.

One job: turn benchmark items (data/benchmarks.py) and a frozen video LLM into answers under a method's selection —
the prompt in the model's chat template, the registry's keep rule as a selector, greedy generation (or the kit's
option scoring), one JSON record per item in a resumable results file — and the paper's score of a results table.
`evaluate_benchmark` runs one method at one ratio (cli/benchmark_eval.py); paper/evaluation_pass.py answers every
method and ratio from one read of each video. Also the efficiency measurement of one method (`efficiency_profile`)
and `collect`, which gathers run summaries into the paper's tables.

Answering, two modes:
- "generate" (lmms-eval's, the paper's): the item's lmms-eval `prompt` inside the model's own chat template
  (models.loader.chat_template), greedy decoding of at most `max_new_tokens` tokens, benchmarks.parse_answer.
- "loglikelihood" (the kit's): the same prompt, the option with the highest option-text log-likelihood
  (evaluation.option_scores). Cheaper and never unparseable, but not what the paper reports.
"""
import dataclasses
import json
import time
from contextlib import contextmanager
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
from cacovid_lib.data.benchmarks import accuracy_by_category, parse_answer, read_benchmark_video
from cacovid_lib.data.schema import OPTION_LETTERS, answer_letter
from cacovid_lib.io_utils import RATIO, KitInputError, append_jsonl, read_jsonl_records
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.selection import SelectionRule
from cacovid_lib.models.generation import generate_cached, generate_pruned_inside_cached
from cacovid_lib.models.loader import chat_template
from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM


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
    known = [f.name for f in dataclasses.fields(registry.MethodSettings) if f.name not in ("cacovid_rule", "seed")]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise KitInputError(f"method setting {unknown[0]!r}: unknown; known: {', '.join(known)}")
    method_settings = registry.MethodSettings(cacovid_rule=SelectionRule(imp_ratio=imp_ratio), seed=seed, **settings)
    batch_pixels: dict[tuple[int, ...], torch.Tensor] = {}
    ctx = registry.MethodContext(vlm, items, pixels_of=lambda idx: batch_pixels[tuple(int(i) for i in idx)], policy=policy)
    rule = registry.build(method, ctx, retention, method_settings)

    def select(idx, pixels, video_embeds):
        batch_pixels.clear()
        batch_pixels[tuple(int(i) for i in idx)] = pixels
        return rule(idx, video_embeds)

    return select


# ---- answering -----------------------------------------------------------------------------------------
def answer(vlm, items: list[dict], video_embeds: torch.Tensor, sel: Selection, answer_mode: str,
           max_new_tokens: int) -> list[tuple[str | None, object]]:
    """(predicted letter or None, raw output: generated text or option scores) for each item of the batch: greedy
    generation with a KV cache (lmms-eval's mode) or the kit's option-text log-likelihood."""
    if answer_mode == "loglikelihood":
        scores = option_scores(vlm, items, video_embeds, sel).float().cpu()  # (B, options)
        return [(OPTION_LETTERS[int(s.argmax())], [round(float(x), 4) for x in s]) for s in scores]
    video = video_embeds if sel.video_embeds is None else sel.video_embeds.to(video_embeds.device)
    keeps = sel.keeps.to(video_embeds.device)
    if sel.prune_after_layer is None:  # greedy decoding with a KV cache (models/generation.py)
        texts = generate_cached(vlm, items, video, keeps, max_new_tokens)
    else:  # FastV: the later layers' cache holds only the kept tokens
        texts = generate_pruned_inside_cached(vlm, items, video, keeps, sel.prune_after_layer, max_new_tokens)
    return [(parse_answer(it["benchmark"], text, it["options"]), text) for it, text in zip(items, texts)]


@torch.no_grad()
def encode_items(vlm, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode each item's video (uniform num_frames) and encode the batch -> (pixels (B, ...), video embeds (B, N+1, D))."""
    pixels = torch.stack([vlm.preprocess(read_benchmark_video(item["path"], vlm.num_frames)) for item in items])
    return pixels, vlm.encode_video(pixels)


# what reading a missing, cut-off or undecodable video raises (benchmarks.read_benchmark_video: KitInputError; decord's
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
            frames.append(vlm.preprocess(read_benchmark_video(views[i]["path"], vlm.num_frames)))
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
