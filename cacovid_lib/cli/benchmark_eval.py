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

    python -m cacovid_lib.cli.benchmark_eval --params paper/params.yaml --model llava_onevision_7b --benchmark videomme \\
        --method cacovid --retention 0.25 --out results/llava_onevision_7b/videomme/cacovid-0.25.jsonl
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare import registry
from cacovid_lib.data.benchmarks import BENCHMARKS
from cacovid_lib.io_utils import RATIO, KitInputError, run_cli, write_json_atomic
from cacovid_lib.models.loader import ATTENTION, DTYPES, chat_template
from cacovid_lib.paper.answering import (  # noqa: F401  (the names tests and users reach through this command)
    ANSWER_MODES, benchmark_score, check_method_for, check_results_file, collect, efficiency_profile, evaluate_benchmark,
    prompt_items, prompt_template, read_results, run_fields
)
from cacovid_lib.paper.params import DEFAULTS, PLACEHOLDER, method_settings, read_gpu_params


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
    p.add_argument("--params", help="a GPU-profile params file (paper/params.yaml): defaults for everything below")
    p.add_argument("--model", help="model folder, or a key of the params file's models")
    p.add_argument("--benchmark", help="one of benchmarks.BENCHMARKS: " + ", ".join(sorted(BENCHMARKS)))
    p.add_argument("--annotations", help="the benchmark's annotation file or folder (data/benchmarks.py names each)")
    p.add_argument("--video-root", help="the benchmark's video folder")
    p.add_argument("--method", help="a key of the method registry: " + ", ".join(
        m.key + (" (LLaVA-OneVision only)" if m.llava_only else "") for m in registry.METHODS))
    p.add_argument("--retention", type=_ratio, default=None, help="retention ratio in (0, 1]; method all: 1")
    p.add_argument("--policy", help="policy folder (policy.save_policy / release_import), for methods cacovid and cacovid_release_rule")
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
    if registry.method(args.method).trained and settings["policy"]:
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
    if registry.method(settings["method"]).trained:
        if not settings["policy"]:
            raise KitInputError(f"--policy: required for method {settings['method']}")
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
    if registry.method(settings["method"]).trained:
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
