"""Assemble reports/README.md from the metrics, tables and figures the pipeline wrote (nothing is typed in by hand),
and the results block of the project's README.md (between RESULTS_BEGIN and RESULTS_END)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from cacovid_lib.io_utils import KitInputError, write_text_atomic

# (title, table file, figure file, what it shows) in reading order; paths relative to reports/. A table file is
# markdown, a flat metrics JSON (shown as measure | value) or a CSV.
SECTIONS = [
    ("The embedded world", "metrics/world_stats.json", "figures/world_samples.png",
     "What the test split asks of a compressor, from the generator's ground truth (embedded/world_stats.py), and "
     "sample videos as the video LLM sees them with the asked objects' tokens outlined."),
    ("The small video LLM", "tables/vlm.md", "figures/vlm_training.png",
     "Test accuracy with all video tokens, without the video (blind), and with random token subsets."),
    ("How the video tokens are spread", "metrics/token_geometry.json", "figures/token_geometry.png",
     "Mean cosine between two video tokens of one test video, by kind of pair (compare/token_geometry.py): two "
     "different objects, an object and a background or clutter token, two background or clutter tokens (and two at "
     "different grid cells: a static cell seen again in another frame left out); each token's cosine with its nearest "
     "non-object token (how far the objects stand out of the cone); and, prefixed pixels_, the same measures of the "
     "cells' pixels (the split's mean cell removed). Diversity rules (DivPrune, the density-peak picks) rank tokens by "
     "this geometry."),
    ("The selection rule, chosen on validation", "tables/selection_rules.csv", None,
     "How the policy's scores become a keep mask (method/selection.py SelectionRule): each rule tried on the validation "
     "split, the release's first, then one field changed at a time from the best so far (compare/cacovid.py "
     "rule_search); accuracy at each retention ratio, mean over the policies."),
    ("CaCoVID against random selection", "tables/policy.md", "figures/policy_retention.png",
     "The trained policy at every retention ratio, with the rule chosen on validation and with the release's rule."),
    ("The policy network's supervised upper bound", "tables/policy_upper_bound.md", "figures/policy_upper_bound.png",
     "The same network as the policy, trained by supervision on the ground truth (the asked objects' tokens, or every "
     "object's tokens) and selected by the same rule, beside the RL-trained policies (test split): can the network "
     "find what the question asks about, and does RL find it?"),
    ("Where the selection rule loses the asked object", "tables/selection_loss.csv", "figures/selection_loss.png",
     "Per question with an asked object on screen (test split): kept by the policy's top tokens, kept only by the even "
     "fill, or lost at the frame allocation, the per-frame cap or the token ranking (compare/selection_loss.py), for "
     "the RL policies and the supervised bound, with the release's rule and the chosen one."),
    ("Main table: every method at every retention ratio", "tables/main.md", "figures/benchmark_retention.png",
     "Every registered method on the same test questions, at the same token budgets."),
    ("Which objects the kept tokens show", "tables/coverage.csv", None,
     "Per method and retention ratio (test split, ground truth): the share of questions with a kept token on every "
     "asked object that is on screen, the objects with a kept token (of 6), and the share of kept tokens on "
     "background or clutter. Merging methods are scored at the positions they keep."),
    ("Accuracy against prefill compute", "tables/equal_flops.csv", "figures/accuracy_flops.png",
     "Every method's test accuracy against the analytic prefill FLOPs of what it runs (tables/accuracy_flops.csv; "
     "compare/efficiency.py), at the embedded model's shape and at LLaVA-OneVision-7B's; the table: CaCoVID's "
     "accuracy interpolated at FastV's FLOPs at each of FastV's ratios (empty outside CaCoVID's measured range)."),
    ("Efficiency", "tables/efficiency.md", None,
     "Selection time, LLM prefill time, prefill FLOPs and peak memory for one video on this machine, then the "
     "analytic prefill FLOPs for LLaVA-OneVision-7B at 32 frames."),
    ("Contribution vs attention", "tables/audit.md", "figures/audit_heatmaps.png",
     "How well each score ranks the tokens by their measured contribution to the correct answer."),
    ("Why three peers fall below random here", "tables/peer_ablations.csv", None,
     "FlashVID, VisionZip and VidCom², each with its suspected step ablated, beside random, on the validation split: "
     "accuracy with its 95% interval and the asked-object coverage (compare/peer_diagnosis.py; the verdicts: "
     "docs/baselines.md). How each score ranks the asked object's tokens: tables/peer_geometry.csv."),
    ("Ablations", "tables/ablations.md", "figures/ablations.png",
     "Short policy runs that differ from the base recipe in one setting each, scored on the validation split."),
]


def _read(path: Path) -> str:
    if not path.is_file():
        raise KitInputError(f"{path}: not found (run the stage that writes it: dvc repro)")
    return path.read_text().strip()


def _table(path: Path) -> str:
    """A section's table as markdown: a markdown file as it is, a flat metrics JSON as measure | value rows, a CSV
    with three decimals."""
    text = _read(path)
    if path.suffix == ".json":
        rows = [f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
                for key, value in json.loads(text).items() if not key.startswith("runtime_")]  # in "Ran under"
        return "\n".join(["| measure | value |", "|---|---|", *rows])
    if path.suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path).to_markdown(index=False, floatfmt=".3f")
    return text


def headline(reports: Path) -> list[str]:
    """A few sentences of the key numbers, read from the (flat, pipeline/metrics.py) metrics files."""
    vlm = json.loads(_read(reports / "metrics" / "vlm.json"))
    policy = json.loads(_read(reports / "metrics" / "policy.json"))
    bench = json.loads(_read(reports / "metrics" / "benchmark.json"))
    eff = json.loads(_read(reports / "metrics" / "efficiency.json"))
    lines = [f"- Small video LLM, test split: {vlm['accuracy_full']:.3f} with all tokens, {vlm['accuracy_blind']:.3f} without the video."]
    for ratio in ("0.10", "0.05"):
        if f"cacovid_margin_at_{ratio}" in bench:
            margin = bench[f"cacovid_margin_at_{ratio}"]
            verdict = "ahead of every baseline" if margin > 0 else "**not** ahead of every baseline"
            lines.append(f"- At {float(ratio):.0%} retention CaCoVID scores {bench[f'cacovid_accuracy_at_{ratio}']:.3f} "
                         f"({bench[f'cacovid_share_of_upper_bound_at_{ratio}']:.1%} of all tokens): {verdict} "
                         f"(best baseline {bench[f'best_baseline_at_{ratio}']}, margin {margin:+.3f}).")
    share = eff["cacovid_selection_share_of_full_prefill"]
    faster = "below" if eff["cacovid_faster_than_divprune"] else "**above**"
    lines.append(f"- CaCoVID's selection for one video takes {eff['cacovid_selection_ms']:.2f} ms = {share:.0%} of the all-token "
                 f"prefill ({eff['full_prefill_ms']:.2f} ms), {faster} DivPrune's {eff['divprune_selection_ms']:.2f} ms.")
    if "imp_ratio" in policy:
        rule = ", ".join(f"{k} {policy[k]}" for k in ("imp_ratio", "cap_multiple", "frame_floor", "frame_sharpness",
                                                        "allocation") if k in policy)
        lines.append(f"- The selection rule, chosen on validation: {rule} (the release's: imp_ratio 0.5, cap_multiple "
                     "1.5, frame_floor 0.5, frame_sharpness 3.0, per_frame).")
    return lines


def build_report(reports_dir) -> str:
    """The markdown of reports/README.md."""
    reports = Path(reports_dir)
    out = ["# Results on the embedded default", "",
           "Generated by `dvc repro` (stage `report`, notebook 12) from the metrics and tables in this folder; "
           "every number comes from the committed code and the `dvc.lock` next to it. Executed notebooks are in "
           "[notebooks/](notebooks/).", "", "## Headline", "", *headline(reports), ""]
    for title, table, figure, what in SECTIONS:
        out += [f"## {title}", "", what, "", _table(reports / table), ""]
        if figure:
            if not (reports / figure).is_file():
                raise KitInputError(f"{reports / figure}: not found (run the stage that writes it: dvc repro)")
            out += [f"![{title}]({figure})", ""]
    return "\n".join(out + ran_under(reports))


PIPELINE_METRICS = ["world_stats", "vlm", "token_geometry", "blind_filter", "policy", "policy_upper_bound", "benchmark",
                    "efficiency", "audit", "ablations"]
"""the main pipeline's metrics files (reports/metrics/<name>.json), in stage order: the report stage's deps"""


def ran_under(reports: Path) -> list[str]:
    """The "Ran under" section: each metrics file's `runtime_*` keys (the CPU pins, torch's kernel level, the
    threads, the library versions, the CPU: written by the stage runner), one row per distinct record."""
    records: dict[tuple, list[str]] = {}
    for path in [reports / "metrics" / f"{name}.json" for name in PIPELINE_METRICS]:
        runtime = {k.removeprefix("runtime_"): v for k, v in json.loads(path.read_text()).items()
                   if k.startswith("runtime_")}
        if runtime:
            records.setdefault(tuple(sorted(runtime.items())), []).append(path.stem)
    if not records:
        return []
    out = ["## Ran under", "", "What each stage's metrics record of the machine and the CPU pins "
           "(cacovid_lib/cpu_pins.py) it ran under.", ""]
    for record, stems in records.items():
        out += [f"Metrics {', '.join(stems)}:", "", "| key | value |", "|---|---|",
                *[f"| {k} | {v} |" for k, v in record], ""]
    return out


# ---- the results block of the project's README.md ----------------------------------------------------------------
RESULTS_BEGIN = "<!-- results:begin -->"
RESULTS_END = "<!-- results:end -->"
RETENTION_FIGURE = "figures/benchmark_retention.png"
"""the figure the block shows, relative to reports/"""
_METHOD_AT = re.compile(r"^(?P<key>[a-z0-9_]+)_accuracy_at_(?P<ratio>[0-9.]+)$")


def _cell(metrics: dict, name: str) -> str:
    """`acc [low, high]`, with `± sd` after the accuracy where the metrics have one; '—' where the key is absent."""
    if metrics.get(name) is None:
        return "—"
    sd = f" ± {metrics[f'{name}_sd']:.3f}" if metrics.get(f"{name}_sd") is not None else ""
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{metrics[name]:.3f}{sd}{interval}"


def results_block(benchmark: dict, names: dict[str, str] | None = None,
                  figure: str | None = f"reports/{RETENTION_FIGURE}") -> str:
    """The README's results block from benchmark.json's flat metrics (pipeline/metrics.py: benchmark_metrics): one
    row per method, one column per retention ratio in the metrics (largest first), each cell the test accuracy with
    its 95% interval (CaCoVID: mean ± sd over its training seeds, then the interval of the mean), rows by accuracy at
    the largest ratio; then the all-token accuracy and the figure. `names` maps a metrics key ("fastv_input") to its
    display name ("FastV (input)"); a key without one is shown as it is. Pure: the same metrics give the same text."""
    names = names or {}
    cells: dict[str, dict[str, str]] = {}
    for key in benchmark:
        match = _METHOD_AT.match(key)
        if match:
            cells.setdefault(match["key"], {})[match["ratio"]] = key
    if not cells:
        raise KitInputError("benchmark metrics: no `<method>_accuracy_at_<ratio>` key (run the benchmark stage)")
    ratios = sorted({r for by_ratio in cells.values() for r in by_ratio}, key=float, reverse=True)
    first = ratios[0]
    order = sorted(cells, key=lambda m: (-(benchmark.get(cells[m].get(first, "")) or -1.0), m))
    header = ["| method | " + " | ".join(f"{float(r):.0%} retention" for r in ratios) + " |",
              "|---|" + "---|" * len(ratios)]
    rows = []
    for key in order:
        name = names.get(key, key)
        label = f"**{name}**" if key == "cacovid" else name
        rows.append(f"| {label} | " + " | ".join(_cell(benchmark, cells[key][r]) if r in cells[key] else "—"
                                                 for r in ratios) + " |")
    questions = f" on {benchmark['num_test']:,} test questions" if "num_test" in benchmark else ""
    lines = [f"Accuracy{questions}, with its 95% bootstrap interval over the questions; CaCoVID: mean ± sd over its "
             "training seeds. All tokens (no compression): "
             f"{_cell(benchmark, 'accuracy_all_tokens')}.", "", *header, *rows]
    if figure:
        lines += ["", f"![Accuracy against retention, every method]({figure})"]
    return "\n".join(lines)


def method_names(main_csv) -> dict[str, str]:
    """metrics key -> display name, from the method column of the benchmark's main table (reports/tables/main.csv)."""
    import pandas as pd

    from cacovid_lib.pipeline.metrics import metric_name

    path = Path(main_csv)
    if not path.is_file():
        raise KitInputError(f"{path}: not found (run the stage that writes it: dvc repro)")
    return {metric_name(m): str(m) for m in pd.read_csv(path)["method"].dropna().unique()}


def readme_block(reports_dir="reports", figure_prefix: str = "reports") -> str:
    """The results block as the report stage writes it into README.md, from `reports_dir`'s benchmark.json and
    main.csv; the figure linked as `figure_prefix`/figures/... (the README sits beside reports/)."""
    reports = Path(reports_dir)
    if not (reports / RETENTION_FIGURE).is_file():
        raise KitInputError(f"{reports / RETENTION_FIGURE}: not found (run the stage that writes it: dvc repro)")
    benchmark = json.loads(_read(reports / "metrics" / "benchmark.json"))
    return results_block(benchmark, method_names(reports / "tables" / "main.csv"), f"{figure_prefix}/{RETENTION_FIGURE}")


def replace_block(text: str, block: str, begin: str = RESULTS_BEGIN, end: str = RESULTS_END) -> str:
    """`text` with everything between its one `begin` and its one `end` marker replaced by `block` (markers kept,
    each on its own line)."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise KitInputError(f"README: needs exactly one {begin} followed by one {end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{block.strip()}\n{end}{tail}"


def current_block(text: str, begin: str = RESULTS_BEGIN, end: str = RESULTS_END) -> str:
    """What stands between the markers of `text`, stripped."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise KitInputError(f"README: needs exactly one {begin} and one {end}")
    return text.split(begin)[1].split(end)[0].strip()


def update_readme(path, block: str) -> bool:
    """Write `block` between the markers of the file at `path`, atomically and only if it changed (a file that does
    not exist, e.g. a hand run's scratch/README.md, is created holding the markers and the block); True if written."""
    path = Path(path)
    old = path.read_text() if path.is_file() else f"{RESULTS_BEGIN}\n{RESULTS_END}\n"
    new = replace_block(old, block)
    if new == old:
        return False
    write_text_atomic(path, new)
    return True
