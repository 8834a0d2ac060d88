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
from cacovid_lib.data.benchmarks import accuracy_by_category, parse_answer
from cacovid_lib.data.schema import OPTION_LETTERS, answer_letter
from cacovid_lib.data.video_io import read_video
from cacovid_lib.io_utils import KitInputError, append_jsonl, read_jsonl_records, run_cli, write_json_atomic
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.loader import chat_template
from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM
from cacovid_lib.pipeline.params import read_params

ANSWER_MODES = ("generate", "loglikelihood")

# selector(item indices, pixels (B, ...), video embeds (B, N+1, D)) -> Selection
Selector = Callable[[np.ndarray, torch.Tensor, torch.Tensor], Selection]


def supported_methods(vlm) -> tuple[str, ...]:
    """The registry's method keys this backend runs: every one on LLaVA-OneVision; on Qwen2.5-VL not the
    LLaVA-only ones (their forwards use LLaVA-OneVision's 1-D positions and SigLIP tower; registry.Method)."""
    qwen = isinstance(vlm, Qwen25VLVideoLLM)
    return tuple(m.key for m in registry.METHODS if not (qwen and m.llava_only))


def check_method(vlm, method: str) -> None:
    if method not in supported_methods(vlm):
        backend = "Qwen2.5-VL" if isinstance(vlm, Qwen25VLVideoLLM) else "LLaVA-OneVision"
        raise KitInputError(f"method {method!r}: not supported for {backend}; supported: {', '.join(supported_methods(vlm))}")


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


@torch.no_grad()
def evaluate_batch(vlm, views: list[dict], idx: np.ndarray, select: Selector, run: dict, max_new_tokens: int) -> list[dict]:
    """One JSON record per item of the batch `idx` (indices into `views`)."""
    start = time.perf_counter()
    batch = [views[i] for i in idx]
    pixels, video_embeds = encode_items(vlm, batch)
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


# ---- the evaluation ------------------------------------------------------------------------------------
def evaluate_benchmark(vlm, items: Sequence[dict], method: str, retention: float, num_frames: int, out_file,
                       policy: CompressionPolicy | None = None, imp_ratio: float = 0.5, batch_size: int = 1,
                       answer_mode: str = "generate", max_new_tokens: int = 16, template: str | None = None,
                       seed: int = 0, progress: bool = True, **method_kw) -> pd.DataFrame:
    """Evaluate `vlm` (a models.base.VideoLLM: LlavaOneVisionVideoLLM or Qwen25VLVideoLLM) with `method` at `retention` on benchmark `items`,
    appending one JSON line per item to `out_file` and skipping the items already there; returns
    benchmarks.accuracy_by_category over all `items`. template: the prompt template (default:
    models.loader.chat_template(vlm)); method_kw: registry.MethodSettings fields (make_selector's settings).
    Method "all" keeps every token whatever `retention` (recorded as 1.0)."""
    if answer_mode not in ANSWER_MODES:
        raise KitInputError(f"answer_mode {answer_mode!r}: expected one of {', '.join(ANSWER_MODES)}")
    if num_frames != vlm.num_frames:
        raise KitInputError(f"num_frames: {num_frames}, but the model was loaded for {vlm.num_frames} frames")
    if batch_size < 1:
        raise KitInputError(f"batch_size: {batch_size}, expected at least 1")
    views = prompt_items(items)
    run = {"method": method, "retention": 1.0 if method == "all" else float(retention), "answer_mode": answer_mode}
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    done = read_results(out_file, run)
    todo = np.array([i for i, it in enumerate(views) if str(it["problem_id"]) not in done], dtype=int)
    with prompt_template(vlm, template or chat_template(vlm)), \
            tqdm(total=len(views), initial=len(views) - len(todo), desc=f"{method} {run['retention']}",
                 disable=not progress, mininterval=5) as bar:
        # indices into all items, so seeded methods (random) draw the same mask for an item on a resumed run
        select = make_selector(vlm, views, method, run["retention"], policy, imp_ratio, seed, **method_kw)
        for start in range(0, len(todo), batch_size):
            records = evaluate_batch(vlm, views, todo[start:start + batch_size], select, run, max_new_tokens)
            append_jsonl(out_file, records)
            done.update((r["problem_id"], r) for r in records)
            bar.update(len(records))
    return accuracy_by_category(items, [done[str(it["problem_id"])]["predicted"] for it in items])


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


# ---- command line --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", help="a GPU-profile params file (params.gpu.yaml): defaults for everything below")
    p.add_argument("--model", help="model folder, or a key of the params file's models")
    p.add_argument("--benchmark", help="one of benchmarks.BENCHMARKS: videomme, mlvu_dev, mlvu_test, longvideobench, mvbench")
    p.add_argument("--annotations", help="the benchmark's annotation file or folder (data/benchmarks.py names each)")
    p.add_argument("--video-root", help="the benchmark's video folder")
    p.add_argument("--method", help="a key of the method registry: " + ", ".join(
        m.key + (" (LLaVA-OneVision only)" if m.llava_only else "") for m in registry.METHODS))
    p.add_argument("--retention", type=float, default=None, help="retention ratio in (0, 1]; method all: 1")
    p.add_argument("--policy", help="policy folder (policy.save_policy / release_import), for method cacovid")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--dtype", help="float32, bfloat16, float16")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--attn-implementation", help="sdpa, eager, flash_attention_2")
    p.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), help="Qwen2.5-VL only: frames resized to H x W")
    p.add_argument("--imp-ratio", type=float)
    p.add_argument("--answer-mode", choices=ANSWER_MODES)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--prompt-template", help="override the chat template; must hold {problem} and the video marker")
    p.add_argument("--limit", type=int, help="only the first N items (smoke runs)")
    p.add_argument("--efficiency-items", type=int, help="also time selection and prefill on the first N items")
    p.add_argument("--timing-repeats", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="results file (JSON lines); default results/<model>/<benchmark>/<method>-<retention>.jsonl")
    p.add_argument("--collect", metavar="DIR", help="only gather DIR's *.summary.json into the main and efficiency tables")
    return p


DEFAULTS = {"num_frames": 32, "dtype": "bfloat16", "attn_implementation": "sdpa", "imp_ratio": 0.5, "answer_mode": "generate",
            "max_new_tokens": 16, "batch_size": 1, "efficiency_items": 0, "timing_repeats": 10, "seed": 0}


def method_settings(evaluation: dict) -> dict:
    """make_selector's keyword settings from a params file's `evaluation` block: its registry.MethodSettings fields
    (fastv_layer, temporal_merge_threshold, fastvid_threshold, ...), by their own names; imp_ratio and seed are run
    settings of their own."""
    fields = {f.name for f in dataclasses.fields(registry.MethodSettings)} - {"imp_ratio", "seed"}
    return {k: v for k, v in evaluation.items() if k in fields}


def resolve(args: argparse.Namespace) -> dict:
    """The run's settings: the command line, else the params file (its model entry, benchmark entry and
    `evaluation` block, and `num_frames`), else DEFAULTS."""
    params = read_params(args.params) if args.params else {}
    for flag in ("model", "benchmark", "method"):
        if getattr(args, flag) is None:
            raise KitInputError(f"--{flag}: required (or --collect DIR)")
    model = params.get("models", {}).get(args.model, {"path": args.model})
    bench = params.get("benchmarks", {}).get(args.benchmark, {})
    evaluation = params.get("evaluation", {})
    given = {k: v for k, v in vars(args).items() if v is not None}
    top = {"num_frames": params["num_frames"]} if "num_frames" in params else {}  # the only run setting at the top level

    def pick(key):  # first found: command line, model entry, benchmark entry, evaluation block, top level, DEFAULTS
        return next((d[key] for d in (given, model, bench, evaluation, top, DEFAULTS) if key in d), None)

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
    name = args.model if args.model in params.get("models", {}) else Path(args.model).name
    settings["model"] = name
    settings["out"] = Path(args.out or f"results/{name}/{args.benchmark}/{args.method}-{settings['retention']}.jsonl")
    return settings


def run(settings: dict) -> dict:
    """Load, evaluate, optionally time; write the summary next to the results file and return it."""
    from cacovid_lib.data.benchmarks import BENCHMARKS
    from cacovid_lib.method.policy import load_policy
    from cacovid_lib.models.loader import load_video_llm

    device = settings["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    frame_size = tuple(settings["frame_size"]) if settings["frame_size"] else None
    items = BENCHMARKS[settings["benchmark"]](settings["annotations"], settings["video_root"])[:settings["limit"]]
    vlm = load_video_llm(settings["model_path"], settings["num_frames"], device=device, dtype=settings["dtype"],
                         attn_implementation=settings["attn_implementation"], frame_size=frame_size)
    policy = None
    if settings["method"] == "cacovid":
        if not settings["policy"]:
            raise KitInputError("--policy: required for method cacovid")
        policy = load_policy(settings["policy"], vlm.language_model).to(vlm.device).eval()
    common = dict(policy=policy, imp_ratio=settings["imp_ratio"], template=settings["prompt_template"], seed=settings["seed"],
                  **settings["method_kw"])
    table = evaluate_benchmark(vlm, items, settings["method"], settings["retention"], settings["num_frames"], settings["out"],
                               batch_size=settings["batch_size"], answer_mode=settings["answer_mode"],
                               max_new_tokens=settings["max_new_tokens"], **common)
    records = read_results(settings["out"])
    summary = {"model": settings["model"], "model_path": str(settings["model_path"]), "benchmark": settings["benchmark"],
               "method": settings["method"], "retention": settings["retention"], "num_frames": settings["num_frames"],
               "answer_mode": settings["answer_mode"], "imp_ratio": settings["imp_ratio"], "dtype": settings["dtype"],
               "device": device, "policy": settings["policy"], "items": len(items),
               "score": benchmark_score(table, settings["benchmark"]),
               "mean_kept_tokens": float(np.mean([r["kept_tokens"] for r in records.values()])),
               "mean_select_ms": float(np.mean([r["select_ms"] for r in records.values()])),
               "mean_seconds_per_item": float(np.mean([r["seconds"] for r in records.values()])),
               "prompt_template": settings["prompt_template"] or chat_template(vlm),
               "table": table.round(4).to_dict(orient="records")}
    if settings["efficiency_items"]:
        summary["efficiency"] = efficiency_profile(vlm, items[:settings["efficiency_items"]], settings["method"],
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
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
