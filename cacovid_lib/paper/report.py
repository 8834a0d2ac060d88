"""The paper pipeline's report: the reproduced tables in the paper's layout, each number beside the paper's.

Inputs: the evaluation stages' score tables (evaluation_pass.merge_pass, one CSV per model x benchmark), the
efficiency stage's tables, and the paper's own numbers (paper/reference/, transcribed from the authors' release).
Outputs (reports/paper/): main_table.csv (one row per model, method and ratio; every paper column, its paper value
and the difference), main_table.md (cells "kit (paper, kit - paper)"), efficiency.md, a retention-vs-accuracy figure
per model, and README.md. A dry run's report says on every file that its numbers come from random weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cacovid_lib.io_utils import KitInputError, atomic_path, write_text_atomic

BENCHMARK_COLUMNS = ["longvideobench", "mlvu_dev", "mlvu_test", "videomme_short", "videomme_medium", "videomme_long",
                     "videomme_overall"]
AVERAGED = ["longvideobench", "mlvu_dev", "mlvu_test", "videomme_overall"]  # the paper's avg_score
KEYS = ["model", "method", "retention"]
DRY_RUN_BANNER = ("**DRY RUN: tiny randomly initialised models and fixture videos. Every accuracy and time here is "
                  "meaningless; this report only shows that every stage, file and table of the pipeline is produced.**")


def paper_layout(scores: pd.DataFrame) -> pd.DataFrame:
    """Score tables (merge_pass rows of every model x benchmark) -> one row per model, method and ratio with the
    paper's columns (%); avg_score over the four benchmarks (NaN until all four ran), avg_percent of the same model's
    all-token average."""
    rows = {}
    for _, r in scores.iterrows():
        row = rows.setdefault((r["model"], r["method"], float(r["retention"])), {})
        if r["benchmark"] == "videomme":
            row["videomme_overall"] = r["score"]
            for part in ("short", "medium", "long"):
                row[f"videomme_{part}"] = r.get(f"category {part}", np.nan)
        else:
            row[r["benchmark"]] = r["score"]
    table = pd.DataFrame([dict(zip(KEYS, k)) | v for k, v in rows.items()]).reindex(columns=KEYS + BENCHMARK_COLUMNS)
    table["avg_score"] = table[AVERAGED].mean(axis=1, skipna=False)
    upper = table[table["method"] == "all"].set_index("model")["avg_score"]
    table["avg_percent"] = 100 * table["avg_score"] / table["model"].map(upper)
    return table.sort_values(["model", "retention", "method"], ascending=[True, False, True]).reset_index(drop=True)


def beside_paper(kit: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Every column of the paper's layout as `<col>` (kit), `<col>_paper` and `<col>_diff` (kit - paper), for the
    rows either side has."""
    columns = BENCHMARK_COLUMNS + ["avg_score", "avg_percent"]
    merged = kit.merge(paper[KEYS + columns], on=KEYS, how="outer", suffixes=("", "_paper"))
    out = merged[KEYS].copy()
    for c in columns:
        out[c] = merged[c].round(2)
        out[f"{c}_paper"] = merged[f"{c}_paper"]
        out[f"{c}_diff"] = (merged[c] - merged[f"{c}_paper"]).round(2)
    return out.sort_values(["model", "retention", "method"], ascending=[True, False, True]).reset_index(drop=True)


def markdown_cells(table: pd.DataFrame) -> pd.DataFrame:
    """beside_paper's table as markdown cells: "kit (paper, diff)", "-" where the kit has no number."""
    def cell(kit, paper, diff):
        if pd.isna(kit):
            return "-" if pd.isna(paper) else f"- ({paper:g})"
        return f"{kit:.1f}" if pd.isna(paper) else f"{kit:.1f} ({paper:g}, {diff:+.1f})"

    out = table[KEYS].copy()
    for c in BENCHMARK_COLUMNS + ["avg_score", "avg_percent"]:
        out[c] = [cell(k, p, d) for k, p, d in zip(table[c], table[f"{c}_paper"], table[f"{c}_diff"])]
    return out


def retention_figure(kit: pd.DataFrame, paper: pd.DataFrame, model: str, path) -> None:
    """Average accuracy (%) against retention per method: the kit's solid, the paper's dashed; the all-token level
    as a horizontal line. A kit average missing a benchmark is the mean of those it has (the title says which ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for source, frame, style in (("kit", kit, "-o"), ("paper", paper, "--x")):
        frame = frame[frame["model"] == model]
        value = frame[AVERAGED].mean(axis=1) if source == "kit" else frame["avg_score"]
        frame = frame.assign(value=value)
        for i, (method, rows) in enumerate(frame[frame["method"] != "all"].groupby("method")):
            rows = rows.sort_values("retention")
            ax.plot(rows["retention"], rows["value"], style, color=f"C{i % 10}", label=f"{method} ({source})")
        full = frame[frame["method"] == "all"]["value"]
        if len(full):
            ax.axhline(float(full.iloc[0]), color="grey", ls=style[:-1], lw=1, label=f"all tokens ({source})")
    ran = [b for b in AVERAGED if kit.loc[kit["model"] == model, b].notna().any()]
    ax.set(xlabel="retention ratio", ylabel="average accuracy (%)",
           title=f"{model}: kit (solid, mean of {', '.join(ran) or 'none'}) and paper (dashed)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def stage_outputs(run: dict, scores_dir, efficiency_dir) -> tuple[list[Path], list[Path], dict[str, list[str]]]:
    """The evaluation and efficiency stages' files for the models and benchmarks `run` names (a file left by an
    earlier run with other models or benchmarks is not read), and per model the methods it left out, and why."""
    import json

    models, benchmarks = run.get("models", []), run.get("benchmarks", [])
    scores = [Path(scores_dir, f"{m}-{b}.csv") for m in models for b in benchmarks]
    left_out = {m: sorted({why for b in benchmarks for why in json.loads(Path(scores_dir, f"{m}-{b}.left_out.json").read_text())})
                for m in models}
    return scores, [Path(efficiency_dir, f"{m}.csv") for m in models], {m: r for m, r in left_out.items() if r}


def write_report(score_files: list, efficiency_files: list, reference_dir, out_dir, dry_run: bool,
                 left_out: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Write reports/paper/ from the stages' tables; returns the main table beside the paper's."""
    if not score_files:
        raise KitInputError("no evaluation scores to report (run the evaluation stages first)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kit = paper_layout(pd.concat([pd.read_csv(f) for f in score_files], ignore_index=True))
    paper = pd.read_csv(Path(reference_dir) / "main_table.csv")
    table = beside_paper(kit, paper)
    with atomic_path(out_dir / "main_table.csv") as tmp:
        table.to_csv(tmp, index=False)
    banner = DRY_RUN_BANNER + "\n\n" if dry_run else ""
    write_text_atomic(out_dir / "main_table.md", banner + "Accuracy (%) per model, method and retention ratio: the kit's "
                      "number, then (the paper's, kit - paper); `-`: not run.\n\n"
                      + markdown_cells(table).to_markdown(index=False) + "\n")
    efficiency = pd.concat([pd.read_csv(f) for f in efficiency_files], ignore_index=True) if efficiency_files else pd.DataFrame()
    paper_eff = pd.read_csv(Path(reference_dir) / "efficiency.csv")
    write_text_atomic(out_dir / "efficiency.md", banner + "Per question at the efficiency ratio: selection (compression) "
                      "and LLM prefill time (ms), the kit's and the paper's.\n\n"
                      + (efficiency.to_markdown(index=False) if len(efficiency) else "(no efficiency stage ran)")
                      + "\n\nThe paper (LLaVA-OneVision-7B, 25%):\n\n" + paper_eff.to_markdown(index=False) + "\n")
    figures = []
    for model in sorted(kit["model"].unique()):
        retention_figure(kit, paper, model, out_dir / "figures" / f"retention_{model}.png")
        figures.append(f"![{model}](figures/retention_{model}.png)")
    notes = "".join(f"- {model}: {why}\n" for model, reasons in (left_out or {}).items() for why in reasons)
    write_text_atomic(out_dir / "README.md", "# The paper's tables, reproduced\n\n" + banner
                      + "Generated by `make paper` (paper/dvc.yaml, stage report). [main_table.md](main_table.md): "
                      "every number beside the paper's; [efficiency.md](efficiency.md); [selection_memory.csv](selection_memory.csv); "
                      "the training health of each policy the pipeline trained: models/paper/<model>/policy/; "
                      "training ablations (paper/params.yaml `ablations.runs`, when declared): ablations/; "
                      "figures below.\n\n"
                      + (f"Left out:\n\n{notes}\n" if notes else "") + "\n".join(figures) + "\n")
    return table
