"""A GPU smoke run at real size: every method's selection, the paper's evaluation pass and its efficiency profile on a
LLaVA-OneVision-7B-shaped model with random weights (no download), in one script of a few minutes on one GPU.

    .venv/bin/python scripts/gpu_smoke.py --out reports/gpu_smoke              # one CUDA GPU, 7B shapes, bf16
    .venv/bin/python scripts/gpu_smoke.py --size tiny --device cpu --out DIR   # the same code at tiny sizes (the test)

Three steps, in this order; after each, what it measured is on disk (a killed run leaves the finished steps' files
and a README that says where it stopped):

1. selection.csv: every registered method's selection (compare/registry.py METHODS) at LLaVA-OneVision-7B's shape
   (32 frames x 196 video tokens + 128 text tokens, bf16) at 25% and 10% retention, and the prefills with every and
   with the kept tokens: median time and CUDA peak memory per row. This is compare/profile.py's `profile_model` (the
   LLaVA-OneVision half of scripts/gpu_profile.py) with fewer repeats and a slow row capped at a few seconds.
2. pass_scores.csv: the paper's evaluation pass (paper/evaluation_pass.py) end to end on synthetic MP4s of the four
   benchmarks' layouts (data/benchmark_fixtures.py, 2 items each, the second shorter than 32 frames): reading and
   encoding the videos through a vision tower sized so that a frame gives 14 x 14 tokens, every method's selection
   (CaCoVID with a random-weight policy) at 25% and 10%, greedy generation of 4 tokens under a KV cache, answer
   parsing and `merge_pass`'s scores, one row per run and benchmark, with its seconds per item and CUDA peak memory.
   Each run over each benchmark is its own pass call so that it can be timed: the paper's pass reads and encodes a
   video once for all runs, so a run's seconds here include one read and encode (the all-token run's are mostly that).
3. efficiency.csv: answering.efficiency_profile (selection, kept-token and all-token prefill medians over 3 repeats)
   for all tokens, CaCoVID, DivPrune and FastV at 25% on 2 items.
README.md names the device (name, total memory, CUDA and torch versions) and each step's wall time.

The weights are random: the accuracies mean nothing; the times and the memory are the point.

Budget on one H100 (estimated from FLOPs at ~0.5 PFLOP/s of bf16 in practice): a 7B prefill of 32 x 196 video + 128
text tokens (6.4k) is ~100 TFLOP (efficiency.prefill_flops), about 0.2 s; at 25% kept ~23 TFLOP, about 0.05 s.
- building a 7B model with random weights on the GPU: ~10-20 s, twice (step 1's model, then steps 2-3's);
- step 1: 5 prefill rows x 5 calls x <= 0.2 s, and 28 selection rows (VisionZip's two skipped: no pixels there),
  most a few ms to 0.2 s a call (DivPrune's greedy loop and the scoring forwards the longest), a slow row stopped
  after ~4 s of timing: ~1-2 min;
- step 2: 29 runs x 8 items, each a video read and bicubic resize to 392 px on the CPU (~0.1 s), its selection, a
  prefill of <= 6.4k tokens and 4 decoding steps of ~20 ms: ~0.3 s an item and run, ~1.5-2 min;
- step 3: 4 methods x 2 items x 3 medians of 5 calls x <= 0.2 s: ~0.5 min.
In all about 4-5 minutes, under 8. At --size tiny on one CPU thread: ~20 s.
"""

import argparse
import gc
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from cacovid_lib.compare import profile, registry
from cacovid_lib.compare.efficiency import peak_memory_mb
from cacovid_lib.data.benchmark_fixtures import write_benchmark_fixtures
from cacovid_lib.data.benchmarks import BENCHMARKS
from cacovid_lib.io_utils import KitInputError, run_cli, save_csv, write_text_atomic
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.paper.answering import efficiency_profile
from cacovid_lib.paper.evaluation_pass import evaluation_pass, merge_pass, pass_runs, run_stem


@dataclass(frozen=True)
class Size:
    """The shapes of one run: profile.MODELS' key (its first model is the LLaVA-OneVision one), the video's frames
    and tokens a frame side, the prompt's text tokens."""

    model: str
    frames: int
    grid_side: int
    text_tokens: int


SIZES = {"7b": Size("llava_onevision_7b", frames=32, grid_side=14, text_tokens=128),  # LLaVA-OneVision-7B's video input
         "tiny": Size("tiny", frames=4, grid_side=4, text_tokens=64)}  # gpu_profile's CPU test sizes
RATIOS = (0.25, 0.1)
PROFILE_REPEATS = 3  # step 1's timed calls a row (after warm-up): medians, not a benchmark
SLOW_ROW_SECONDS = 4.0  # step 1: a Python-loop method's row is timed fewer times past this (profile's default: 10 s)
ITEMS_PER_BENCHMARK = 2
MAX_NEW_TOKENS = 4  # enough for an option letter; each token is one decoding step over the KV cache
FIXTURE_PIXELS = 64  # the synthetic videos' side; the model's preprocessing resizes them to the tower's input
EFFICIENCY_METHODS = ("all", "cacovid", "divprune", "fastv")
EFFICIENCY_RATIO = 0.25
EFFICIENCY_REPEATS = 3
PASS_COLUMNS = ["model", "benchmark", "method", "retention", "score", "items", "answered", "skipped", "unparseable",
                "mean_kept_tokens", "mean_select_ms", "seconds_per_item", "peak_memory_mb", "note"]
EFFICIENCY_COLUMNS = ["method", "retention", "items", "repeats", "device", "video_tokens", "selection_ms", "prefill_ms",
                      "prefill_all_tokens_ms", "kept_tokens", "seconds", "peak_memory_mb", "note"]


@dataclass
class Report:
    """What README.md says: the device, the command, each finished step's wall time and summary line."""

    out: Path
    device: torch.device
    size: str
    argv: list[str]
    steps: list[tuple[str, float, str]] = field(default_factory=list)  # (file, seconds, summary)

    def device_lines(self) -> list[str]:
        versions = f"torch {torch.__version__}"
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            return [f"- device: {torch.cuda.get_device_name(self.device)}, {props.total_memory / 2**30:.1f} GiB",
                    f"- CUDA {torch.version.cuda}, {versions}, bf16 weights"]
        return [f"- device: CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)",
                f"- {versions}, float32 weights"]

    def write(self, done: bool) -> None:
        size = SIZES[self.size]
        lines = ["# GPU smoke run", "",
                 "The weights are random: the accuracies mean nothing; the times and the memory are the point.", "",
                 *self.device_lines(),
                 f"- model: {profile.MODELS[size.model][0].name}-shaped (profile.MODELS[{size.model!r}]), "
                 f"{size.frames} frames x {size.grid_side ** 2} video tokens; text: {size.text_tokens} tokens (step 1), "
                 "the benchmarks' prompts (steps 2-3)",
                 f"- command: `scripts/gpu_smoke.py {' '.join(self.argv)}`", "",
                 "| step | file | wall s | summary |", "|---|---|---|---|"]
        lines += [f"| {n} | {file} | {seconds:.1f} | {summary} |" for n, (file, seconds, summary) in enumerate(self.steps, 1)]
        total = sum(s for _, s, _ in self.steps)
        lines += ["", "Peak memory is CUDA's allocator peak over what was held before (the weights); on a CPU the "
                  "resident-set peak (selection, efficiency: noise) or empty (pass)."]
        lines += ["", f"Complete: {total:.0f} s over the three steps." if done else
                  f"Stopped after step {len(self.steps)} of 3 ({total:.0f} s): the files above are all there is."]
        write_text_atomic(self.out / "README.md", "\n".join(lines) + "\n")

    def step(self, file: str, seconds: float, summary: str) -> None:
        self.steps.append((file, seconds, summary))
        print(f"step {len(self.steps)}: {file} in {seconds:.1f} s: {summary}", flush=True)
        self.write(done=len(self.steps) == 3)


def free_memory(device: torch.device) -> None:
    """The previous step's 15 GB model must be gone before the next one is built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextmanager
def slow_row_cap(seconds: float):
    """profile.MAX_ROW_SECONDS lowered for the block: a smoke run wants every row, not the most precise slow ones."""
    before = profile.MAX_ROW_SECONDS
    profile.MAX_ROW_SECONDS = seconds
    try:
        yield
    finally:
        profile.MAX_ROW_SECONDS = before


def error_note(err: Exception) -> str:
    lines = str(err).splitlines() or [""]
    return f"error: {type(err).__name__}: {lines[0][:160]}"


def cuda_peak_mb(device: torch.device, since: int) -> float:
    """CUDA's allocator peak since the last reset, over `since` bytes (NaN on CPU: a run's RSS peak is noise there)."""
    if device.type != "cuda":
        return float("nan")
    return (torch.cuda.max_memory_allocated(device) - since) / 2**20


# ---- step 1 ----------------------------------------------------------------------------------------------------------
def step_selection(size: Size, device: torch.device, report: Report) -> None:
    spec = profile.MODELS[size.model][0]
    start = time.perf_counter()
    with slow_row_cap(SLOW_ROW_SECONDS):
        table = profile.profile_model(spec, size.frames, size.grid_side ** 2, size.text_tokens, list(RATIOS),
                                      PROFILE_REPEATS, device)
    free_memory(device)
    save_csv(table, report.out / "selection.csv")
    selection = table[table["measurement"] == "selection"]
    timed = selection[selection["repeats"] > 0]
    errors = int(table["note"].astype(str).str.startswith("error:").sum())
    slowest = timed.loc[timed["median_ms"].idxmax()] if len(timed) else None
    summary = (f"{len(timed)} of {len(selection)} selections timed, {errors} errors; all-token prefill "
               f"{table.loc[0, 'median_ms']:.1f} ms" + (f", slowest selection {slowest['method']} at "
                                                        f"{slowest['retention']:g}: {slowest['median_ms']:.1f} ms"
                                                        if slowest is not None else ""))
    report.step("selection.csv", time.perf_counter() - start, summary)


# ---- steps 2 and 3 ---------------------------------------------------------------------------------------------------
def fixture_items(root: Path, frames: int) -> dict[str, list[dict]]:
    """benchmark -> its items, loaded by the kit's loaders from synthetic MP4s in the benchmarks' public layouts."""
    fixtures = write_benchmark_fixtures(root, items_per_benchmark=ITEMS_PER_BENCHMARK, num_frames=frames,
                                        size=FIXTURE_PIXELS)
    return {name: BENCHMARKS[name](entry["annotations"], entry["video_root"]) for name, entry in fixtures.items()}


def step_pass(vlm, model_name: str, policy, items_by: dict[str, list[dict]], pass_dir: Path, device: torch.device,
              report: Report, start: float) -> None:
    """`start`: when building the model began (the step's wall time includes it)."""
    items = [it for group in items_by.values() for it in group]
    runs = pass_runs([m.key for m in registry.METHODS], RATIOS, qwen=False)
    build_s = time.perf_counter() - start
    rows: list[dict] = []
    for run in tqdm(runs, desc="evaluation pass", unit="run"):
        for name, group in items_by.items():
            # one answers folder per benchmark: merge_pass's mean kept tokens and select ms are over every record of
            # a run's files, whatever `items` it is given
            rows.append(pass_row(vlm, model_name, policy, name, group, run, pass_dir / name, device))
        save_csv(pass_table(rows), report.out / "pass_scores.csv")  # after every run: a kill keeps the runs done
    table = pass_table(rows)
    failed = sorted({run_stem((m, r)) for m, r, note in zip(table["method"], table["retention"], table["note"]) if note})
    ok = table[table["note"] == ""]
    summary = (f"model and videos ready in {build_s:.1f} s; {len(runs) - len(failed)} of {len(runs)} runs answered "
               f"all {len(items)} items ({len(items_by)} benchmarks), {ok['seconds_per_item'].mean():.2f} s per item and run on average"
               + (f"; failed: {', '.join(failed)}" if failed else ""))
    report.step("pass_scores.csv", time.perf_counter() - start, summary)


def pass_row(vlm, model_name: str, policy, benchmark: str, items: list[dict], run: tuple, pass_dir: Path,
             device: torch.device) -> dict:
    """One run of the pass over one benchmark's items: merge_pass's row, the seconds per item and the peak memory;
    a failure is a row saying why (one method's failure at real size must not lose the other runs' numbers)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    began = time.perf_counter()
    try:
        evaluation_pass(vlm, items, [run], pass_dir, policy=policy, settings=registry.MethodSettings(),
                        answer_mode="generate", max_new_tokens=MAX_NEW_TOKENS, batch_size=1, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - began
        row, note = merge_pass(pass_dir, items, [run], model_name, benchmark).iloc[0].to_dict(), ""
    except Exception as err:
        free_memory(device)
        seconds, note = time.perf_counter() - began, error_note(err)
        row = {"model": model_name, "benchmark": benchmark, "method": run[0], "retention": run[1], "items": len(items)}
    return row | {"seconds_per_item": round(seconds / len(items), 3),
                  "peak_memory_mb": round(cuda_peak_mb(device, before), 1), "note": note}


def pass_table(rows: list[dict]) -> pd.DataFrame:
    """merge_pass's rows (one per run and benchmark; a failed run: one row saying why) with each run's seconds per
    item and peak memory, in run order; merge_pass's per-category accuracies last."""
    table = pd.DataFrame(rows)
    categories = sorted(c for c in table.columns if c not in PASS_COLUMNS)
    return table.reindex(columns=PASS_COLUMNS + categories)


def efficiency_items(items_by: dict[str, list[dict]]) -> list[dict]:
    """The first 2 items of the pass (the first benchmark's: its second video is the short one, whose frames
    benchmarks.read_benchmark_video repeats)."""
    return [it for group in items_by.values() for it in group][:2]


def step_efficiency(vlm, policy, items: list[dict], device: torch.device, report: Report) -> None:
    start = time.perf_counter()
    rows = []
    for method in EFFICIENCY_METHODS:
        row = {"method": method, "retention": 1.0 if method == "all" else EFFICIENCY_RATIO, "note": ""}
        began = time.perf_counter()
        try:
            result = {}
            row["peak_memory_mb"] = round(peak_memory_mb(lambda: result.update(efficiency_profile(
                vlm, items, method, EFFICIENCY_RATIO, policy=policy, repeats=EFFICIENCY_REPEATS)), device), 1)
            row |= result
        except Exception as err:  # the other methods' rows are still worth having
            free_memory(device)
            row["note"] = error_note(err)
        row["seconds"] = round(time.perf_counter() - began, 2)
        rows.append(row)
        save_csv(pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS), report.out / "efficiency.csv")
    table = pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)
    by = table.set_index("method")
    summary = (f"{int((table['note'] == '').sum())} of {len(table)} methods profiled on {len(items)} items; prefill "
               f"all tokens {by.loc['all', 'prefill_all_tokens_ms']:.1f} ms, "
               + ", ".join(f"{m} select {by.loc[m, 'selection_ms']:.1f} + prefill {by.loc[m, 'prefill_ms']:.1f} ms"
                           for m in EFFICIENCY_METHODS[1:]))
    report.step("efficiency.csv", time.perf_counter() - start, summary)


# ---- the command line ------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/gpu_smoke", help="folder for the CSVs and README.md")
    p.add_argument("--size", choices=list(SIZES), default="7b",
                   help="7b: LLaVA-OneVision-7B's shapes (a CUDA GPU); tiny: the same code at tiny sizes (CPU)")
    p.add_argument("--device", help="cuda or cpu (default: cuda if available, else cpu)")
    return p.parse_args(argv)


def resolve_device(args) -> torch.device:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KitInputError(f"--device {args.device}: no CUDA GPU here; use --size tiny --device cpu")
    if device.type != "cuda" and args.size != "tiny":
        raise KitInputError(f"--size {args.size}: needs a CUDA GPU (on {device.type} use --size tiny)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # memory statistics need an index
    return device


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        device = resolve_device(args)
        size = SIZES[args.size]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("selection.csv", "pass_scores.csv", "efficiency.csv"):  # no stale file may pass for this run's
            (out / name).unlink(missing_ok=True)
        report = Report(out, device, args.size, sys.argv[1:] if argv is None else list(argv))
        report.write(done=False)

        step_selection(size, device, report)

        start = time.perf_counter()
        spec = profile.MODELS[size.model][0]
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        torch.manual_seed(0)
        vlm = profile.build_llava_onevision(spec.shape, size.grid_side, size.frames, device, dtype)
        policy = CompressionPolicy.from_llm(vlm.language_model).to(device).eval()  # random heads: CaCoVID's cost only
        with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as work:  # videos and answers: nothing to keep
            items_by = fixture_items(Path(work) / "fixtures", size.frames)
            step_pass(vlm, spec.name, policy, items_by, Path(work) / "pass", device, report, start)
            step_efficiency(vlm, policy, efficiency_items(items_by), device, report)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
