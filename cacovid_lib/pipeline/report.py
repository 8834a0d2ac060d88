"""Assemble reports/README.md from the metrics, tables and figures the pipeline wrote (nothing is typed in by hand)."""
from __future__ import annotations

import json
from pathlib import Path

from cacovid_lib.io_utils import KitInputError

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
    ("CaCoVID against random selection", "tables/policy.md", "figures/policy_retention.png",
     "The trained policy at every retention ratio (imp_ratio chosen on validation)."),
    ("The policy network's supervised upper bound", "tables/policy_upper_bound.md", "figures/policy_upper_bound.png",
     "The same network as the policy, trained by supervision on the ground truth (the asked objects' tokens, or every "
     "object's tokens) and selected by the same rule, beside the RL-trained policies (test split): can the network "
     "find what the question asks about, and does RL find it?"),
    ("Main table: every method at every retention ratio", "tables/main.md", "figures/benchmark_retention.png",
     "Every registered method on the same test questions, at the same token budgets."),
    ("Which objects the kept tokens show", "tables/coverage.csv", None,
     "Per method and retention ratio (test split, ground truth): the share of questions with a kept token on every "
     "asked object that is on screen, the objects with a kept token (of 6), and the share of kept tokens on "
     "background or clutter. Merging methods are scored at the positions they keep."),
    ("Efficiency", "tables/efficiency.md", None,
     "Selection time, LLM prefill time and peak memory for one video on this machine, then the analytic "
     "prefill FLOPs for LLaVA-OneVision-7B at 32 frames."),
    ("Contribution vs attention", "tables/audit.md", "figures/audit_heatmaps.png",
     "How well each score ranks the tokens by their measured contribution to the correct answer."),
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
                for key, value in json.loads(text).items()]
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
        lines.append(f"- The policy's imp_ratio, chosen on validation: {policy['imp_ratio']}.")
    return lines


def build_report(reports_dir) -> str:
    """The markdown of reports/README.md."""
    reports = Path(reports_dir)
    out = ["# Results on the embedded default", "",
           "Generated by `dvc repro` (stage `report`, notebook 10) from the metrics and tables in this folder; "
           "every number comes from the committed code and the `dvc.lock` next to it. Executed notebooks are in "
           "[notebooks/](notebooks/).", "", "## Headline", "", *headline(reports), ""]
    for title, table, figure, what in SECTIONS:
        out += [f"## {title}", "", what, "", _table(reports / table), ""]
        if figure:
            if not (reports / figure).is_file():
                raise KitInputError(f"{reports / figure}: not found (run the stage that writes it: dvc repro)")
            out += [f"![{title}]({figure})", ""]
    return "\n".join(out)
