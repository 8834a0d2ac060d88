"""One evaluation pass per model x benchmark: every method at every retention ratio answered from one read of each video.

The paper's main table asks, per model and benchmark, for the all-token row and every method at 25/20/15/10%. Run as
one process per (method, ratio), that reloads the model and decodes and encodes every video once per row. Here:

1. items are sharded over the processes (`rank`, `world_size`: one process per GPU under `accelerate launch`);
2. per batch of items, each video is read (release sampling, short videos included) and encoded ONCE;
3. every (method, ratio) run selects from those cached embeddings; scores that do not depend on the ratio (FastV's
   attention row, VisionZip's vision attention) are computed once per batch and shared (registry.shared_scores);
4. each run answers with greedy generation under a KV cache (models/generation.py) and appends one JSON line per
   item to its own file `<method>-<ratio>.rank<r>.jsonl`: a killed pass resumes where it stopped, with any number of
   processes (an item is done when any rank's file of that run holds it);
5. `merge_pass` gathers the rank files into one scores table: the paper's score per run, the per-category accuracy,
   the answered, skipped and unparseable counts.

A video that cannot be read is skipped and listed (`skipped.rank<r>.json`), never a crash, never a hang across ranks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cacovid_lib.compare import registry
from cacovid_lib.compare.efficiency import timed_s
from cacovid_lib.data.benchmarks import accuracy_by_category
from cacovid_lib.data.schema import answer_letter
from cacovid_lib.io_utils import KitInputError, append_jsonl, read_jsonl_records, write_json_atomic
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.selection import SelectionRule
from cacovid_lib.models.loader import chat_template
from cacovid_lib.paper.answering import (
    answer, benchmark_score, check_method_for, decode_readable, prompt_items, prompt_template
)

Run = tuple[str, float]  # (method key, retention ratio); "all" at 1.0


def pass_runs(methods: Sequence[str], ratios: Sequence[float], qwen: bool) -> list[Run]:
    """The (method, ratio) runs of one pass: the all-token row once, then every other method at every ratio. A method
    the backend cannot run (registry's LLaVA-only ones on Qwen2.5-VL) is a one-line error."""
    for m in methods:
        check_method_for(qwen, m)
    return ([("all", 1.0)] if "all" in methods else []) + [(m, float(r)) for m in methods if m != "all" for r in ratios]


def run_stem(run: Run) -> str:
    return f"{run[0]}-{run[1]:g}"


def answered_ids(path: Path) -> set[str]:
    """problem_ids in an answers file, read only: a last line cut off by a kill (or being written by its rank right
    now) is ignored, never repaired here (only the rank that owns a file repairs it, when it appends)."""
    ids = set()
    for line in path.read_text().splitlines():
        try:
            ids.add(str(json.loads(line)["problem_id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return ids


def done_items(out_dir: Path, run: Run, rank: int) -> set[str]:
    """problem_ids of `run` already answered by any rank (a resumed pass may use another number of processes); this
    rank's own file is repaired first if a kill cut its last line."""
    own = out_dir / f"{run_stem(run)}.rank{rank}.jsonl"
    done = set(read_jsonl_records(own, "problem_id")) if own.is_file() else set()
    for path in sorted(out_dir.glob(f"{run_stem(run)}.rank*.jsonl")):
        done |= answered_ids(path) if path != own else set()
    return done


@torch.no_grad()
def evaluation_pass(vlm, items: Sequence[dict], runs: list[Run], out_dir, policy: CompressionPolicy | None = None,
                    settings: registry.MethodSettings | None = None, answer_mode: str = "generate",
                    max_new_tokens: int = 16, batch_size: int = 1, rank: int = 0, world_size: int = 1,
                    progress: bool = True, template: str | None = None) -> list[dict]:
    """Answer this rank's share of `items` with every run, appending to `out_dir`; returns the skipped videos.
    template: the prompt template (default: the model's chat template, models.loader.chat_template)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings or registry.MethodSettings()
    views = prompt_items(items)
    if policy is not None:
        policy = policy.to(device=vlm.device, dtype=vlm.model.dtype).eval()
    with prompt_template(vlm, template or chat_template(vlm)):
        # 1. the shard and what is left of it per run
        shard = np.arange(rank, len(views), world_size)
        todo = {run: {str(views[i]["problem_id"]) for i in shard} - done_items(out_dir, run, rank) for run in runs}
        pending = np.array([i for i in shard if any(str(views[i]["problem_id"]) in todo[r] for r in runs)], dtype=int)
        batch_pixels: dict[int, torch.Tensor] = {}  # item index -> its pixels: a run may ask for any subset
        ctx = registry.MethodContext(vlm, views, pixels_of=lambda idx: torch.stack([batch_pixels[int(i)] for i in idx]),
                                     policy=policy)
        skipped: list[dict] = []
        bar = tqdm(total=len(pending) * len(runs), desc=f"pass rank {rank}", disable=not progress, mininterval=5)
        for start in range(0, len(pending), batch_size):
            # 2. read and encode each video of the batch once
            idx, frames, unreadable = decode_readable(vlm, views, pending[start:start + batch_size])
            skipped += unreadable
            bar.update(len(unreadable) * len(runs))
            if not len(idx):
                continue
            pixels = torch.stack(frames)  # (B, ...)
            video_embeds = vlm.encode_video(pixels)  # (B, N+1, D)
            batch_pixels.clear()
            batch_pixels.update((int(i), p) for i, p in zip(idx, pixels))
            # 3. the runs' rules share this batch's ratio-independent scores (built anew: no batch's scores are kept)
            ctx.shared = registry.shared_scores(ctx, settings)
            rules = {run: registry.build(run[0], ctx, run[1], settings) for run in runs}
            # 4. every run answers the batch's items it has not answered yet
            for run in runs:
                rows = [r for r, i in enumerate(idx) if str(views[i]["problem_id"]) in todo[run]]
                if not rows:
                    continue
                sel, select_s = timed_s(lambda: rules[run](idx[rows], video_embeds[rows]), vlm.device)  # CUDA synchronised
                select_ms = 1000 * select_s / len(rows)
                batch = [views[idx[r]] for r in rows]
                answers = answer(vlm, batch, video_embeds[rows], sel, answer_mode, max_new_tokens)
                kept = sel.keeps.sum(-1).tolist()
                append_jsonl(out_dir / f"{run_stem(run)}.rank{rank}.jsonl", [
                    {"problem_id": str(it["problem_id"]), "benchmark": it["benchmark"], "category": it["category"],
                     "method": run[0], "retention": run[1], "answer_mode": answer_mode, "predicted": pred,
                     "answer": answer_letter(it), "correct": pred == answer_letter(it), "kept_tokens": int(k),
                     "video_tokens": vlm.num_video_tokens, "output": output, "select_ms": round(select_ms, 3)}
                    for it, (pred, output), k in zip(batch, answers, kept)])
                bar.update(len(rows))
        bar.close()
    write_json_atomic(out_dir / f"skipped.rank{rank}.json", skipped)
    return skipped


def merge_pass(out_dir, items: Sequence[dict], runs: list[Run], model: str, benchmark: str) -> pd.DataFrame:
    """5. One row per run: the paper's score (%), each category's accuracy (%), answered / skipped / unparseable
    counts and the mean kept tokens, from every rank's files."""
    out_dir = Path(out_dir)
    skipped = {s["problem_id"]: s for f in sorted(out_dir.glob("skipped.rank*.json")) for s in json.loads(f.read_text())}
    wanted = {str(it["problem_id"]) for it in items}
    rows = []
    for run in runs:
        records: dict[str, dict] = {}
        for path in sorted(out_dir.glob(f"{run_stem(run)}.rank*.jsonl")):
            records.update(read_jsonl_records(path, "problem_id"))
        records = {i: r for i, r in records.items() if i in wanted}  # only this benchmark's items
        answered = [it for it in items if str(it["problem_id"]) in records]
        if not answered:
            raise KitInputError(f"{out_dir}: no answers for {run_stem(run)} (run the pass first)")
        table = accuracy_by_category(answered, [records[str(it["problem_id"])]["predicted"] for it in answered])
        categories = {f"category {c}": round(100 * a, 2) for c, a in zip(table["category"], table["accuracy"])}
        rows.append({"model": model, "benchmark": benchmark, "method": run[0], "retention": run[1],
                     "score": round(100 * benchmark_score(table, benchmark), 2), "items": len(items),
                     "answered": len(answered), "skipped": sum(str(it["problem_id"]) in skipped and str(it["problem_id"]) not in records for it in items),
                     "unparseable": sum(records[str(it["problem_id"])]["predicted"] is None for it in answered),
                     "mean_kept_tokens": round(float(np.mean([r["kept_tokens"] for r in records.values()])), 1),
                     "mean_select_ms": round(float(np.mean([r["select_ms"] for r in records.values()])), 3),
                     **categories})
    return pd.DataFrame(rows)


# ---- the pipeline's evaluation stage: load, shard, pass, merge -------------------------------------------------------
def stage_items(params: dict, benchmark: str) -> list[dict]:
    """The benchmark's items as the params file points at them (the first run.limit), checked before any model loads."""
    from cacovid_lib.data.benchmarks import BENCHMARKS

    entry = params["benchmarks"][benchmark]
    items = BENCHMARKS[benchmark](entry["annotations"], entry["video_root"])[:(params.get("run") or {}).get("limit")]
    if not items:
        raise KitInputError(f"{entry['annotations']}: no {benchmark} items in it")
    return items


def load_stage_model(params: dict, model: str, device: str):
    """The model entry's video LLM on `device` (each process loads straight onto its own GPU)."""
    from cacovid_lib.models.loader import load_video_llm
    from cacovid_lib.paper.params import DEFAULTS

    entry = params["models"][model]
    frame_size = tuple(entry["frame_size"]) if entry.get("frame_size") else None
    return load_video_llm(entry["path"], params.get("num_frames", DEFAULTS["num_frames"]), device=device,
                          dtype=entry.get("dtype", DEFAULTS["dtype"]),
                          attn_implementation=entry.get("attn_implementation", DEFAULTS["attn_implementation"]),
                          frame_size=frame_size)


def stage_runs(params: dict, model: str, policy_dir) -> tuple[list[Run], list[str]]:
    """(the runs of this model's pass, the methods left out and why): LLaVA-only methods on Qwen2.5-VL, CaCoVID
    without a policy. Read from the model folder's config.json: no model loads."""
    from cacovid_lib.models.loader import model_type, resolve_model_folder
    from cacovid_lib.paper.answering import methods_for

    evaluation = params.get("evaluation") or {}
    qwen = model_type(resolve_model_folder(params["models"][model]["path"])) == "qwen2_5_vl"
    methods, left_out = [], []
    for m in evaluation.get("methods", ["all"]):
        if m not in methods_for(qwen):
            left_out.append(f"{m}: LLaVA-OneVision only in the kit (compare/registry.py)")
        elif m == "cacovid" and not (Path(policy_dir) / "policy.safetensors").is_file():
            left_out.append("cacovid: no policy for this model (models.<key>.policy_source none)")
        else:
            methods.append(m)
    return pass_runs(methods, evaluation.get("retention_ratios", [0.25, 0.2, 0.15, 0.1]), qwen), left_out


def pass_process(params: dict, model: str, benchmark: str, policy_dir, out_dir, rank: int = 0, world_size: int = 1,
                 device: str | None = None) -> list[dict]:
    """One process's share of the pass: load the model (and the policy), answer, write; returns its skipped videos."""
    from cacovid_lib.method.policy import load_policy
    from cacovid_lib.paper.params import DEFAULTS, method_settings

    items = stage_items(params, benchmark)
    device = device or (f"cuda:{rank % max(torch.cuda.device_count(), 1)}" if torch.cuda.is_available() else "cpu")
    vlm = load_stage_model(params, model, device)
    runs, _ = stage_runs(params, model, policy_dir)
    policy = None
    if any(registry.method(m).trained for m, _ in runs):
        policy = load_policy(policy_dir, vlm.language_model).to(vlm.device).eval()
    evaluation = params.get("evaluation") or {}
    rule = SelectionRule(imp_ratio=evaluation.get("imp_ratio", DEFAULTS["imp_ratio"]))  # otherwise the release's rule
    settings = registry.MethodSettings(cacovid_rule=rule,
                                       seed=evaluation.get("seed", DEFAULTS["seed"]), **method_settings(evaluation))
    template = params["models"][model].get("prompt_template") or evaluation.get("prompt_template")
    return evaluation_pass(vlm, items, runs, out_dir, policy, settings, template=template,
                           answer_mode=evaluation.get("answer_mode", DEFAULTS["answer_mode"]),
                           max_new_tokens=params["benchmarks"][benchmark].get("max_new_tokens")
                           or evaluation.get("max_new_tokens", DEFAULTS["max_new_tokens"]),
                           batch_size=evaluation.get("batch_size", DEFAULTS["batch_size"]), rank=rank,
                           world_size=world_size, progress=rank == 0)


def main(argv=None) -> int:
    """`accelerate launch -m cacovid_lib.paper.evaluation_pass --params F --model M --benchmark B --policy DIR --out
    DIR`: each launched process answers its shard (accelerate's process index and count) on its own GPU."""
    import argparse

    from accelerate import PartialState

    from cacovid_lib.io_utils import run_cli
    from cacovid_lib.paper.params import read_gpu_params

    parser = argparse.ArgumentParser(description="one process's shard of an evaluation pass")
    for flag in ("--params", "--model", "--benchmark", "--policy", "--out"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)

    def body() -> int:
        state = PartialState()
        pass_process(read_gpu_params(args.params), args.model, args.benchmark, args.policy, args.out,
                     state.process_index, state.num_processes, device=str(state.device))
        return 0

    return run_cli(body)


def run_evaluation_stage(params_file, model: str, benchmark: str, policy_dir, out_dir) -> pd.DataFrame:
    """The evaluation stage: the pass in this process (run.processes 1) or sharded over `accelerate launch`ed
    processes, then the merged scores table (merge_pass)."""
    import subprocess

    from cacovid_lib.paper.params import read_gpu_params

    params = read_gpu_params(params_file)
    processes = (params.get("run") or {}).get("processes", 1)
    out_dir = Path(out_dir)
    runs, left_out = stage_runs(params, model, policy_dir)
    start_fresh_unless_same(out_dir, {key: params.get(key) for key in ("num_frames", "evaluation")}
                            | {"model": params["models"][model], "benchmark": params["benchmarks"][benchmark],
                               "policy": file_md5(Path(policy_dir) / "policy.safetensors"), "code": pass_code_md5()})
    if processes == 1:
        pass_process(params, model, benchmark, policy_dir, out_dir)
    else:
        cmd = launch_command(processes) + ["-m", "cacovid_lib.paper.evaluation_pass", "--params", str(params_file),
                                           "--model", model, "--benchmark", benchmark, "--policy", str(policy_dir),
                                           "--out", str(out_dir)]
        subprocess.run(cmd, check=True)
    scores = merge_pass(out_dir, stage_items(params, benchmark), runs, model, benchmark)
    scores.attrs["left_out"] = left_out  # the methods this model does not run, and why (the report lists them)
    return scores


def launch_command(processes: int, mixed_precision: str = "no") -> list[str]:
    """`accelerate launch` with every setting explicit (a user's default accelerate config is not read): one machine,
    `processes` processes (one per GPU, refused when there are fewer GPUs; CPU processes where there is none)."""
    import sys

    gpus = torch.cuda.device_count()
    if gpus and processes > gpus:
        raise KitInputError(f"run.processes / policy.processes: {processes}, but this machine has {gpus} GPUs")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes", str(processes),
           "--mixed_precision", mixed_precision if gpus else "no", "--dynamo_backend", "no"]
    return cmd + (["--multi_gpu"] if processes > 1 else [])


def file_md5(path: Path) -> str | None:
    """md5 of a file (None if there is none): what a resumed pass must share with the one that wrote its answers."""
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def pass_code_md5() -> str:
    """One md5 over the library files the evaluation stage runs (its notebook's code deps): a code change starts the
    pass afresh, as DVC reruns the stage."""
    import hashlib

    from cacovid_lib.pipeline.code_deps import ROOT, stage_code_deps

    digest = hashlib.md5()
    for dep in stage_code_deps("notebooks/paper/02-evaluate.ipynb"):
        digest.update(dep.encode() + (ROOT / dep).read_bytes())
    return digest.hexdigest()


def start_fresh_unless_same(out_dir: Path, settings: dict) -> None:
    """A pass resumes only with the settings that wrote its files (recorded in pass_settings.json): with any other
    (another ratio, method setting, model or benchmark entry, policy or library code) its answers are removed first."""
    import shutil

    record = out_dir / "pass_settings.json"
    now = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if record.is_file() and json.loads(record.read_text()) == now:
        return
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_json_atomic(record, now)


if __name__ == "__main__":
    import sys

    sys.exit(main())
