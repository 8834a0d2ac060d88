"""The paper pipeline's report: the kit's numbers in the paper's layout, each beside the paper's, from score tables."""
import pandas as pd

from cacovid_lib.paper.report import BENCHMARK_COLUMNS, beside_paper, markdown_cells, paper_layout, write_report
from conftest import ROOT

REFERENCE = ROOT / "paper" / "reference"


def scores(model="llava_onevision_7b") -> pd.DataFrame:
    """merge_pass-shaped rows: all tokens and one method at 25%, on the four benchmarks."""
    rows = []
    for method, retention, base in (("all", 1.0, 60.0), ("cacovid", 0.25, 50.0)):
        for i, benchmark in enumerate(["longvideobench", "mlvu_dev", "mlvu_test", "videomme"]):
            row = {"model": model, "benchmark": benchmark, "method": method, "retention": retention, "score": base + i}
            if benchmark == "videomme":
                row |= {"category short": base + 10, "category medium": base, "category long": base - 10}
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_paper_layout_averages_four_benchmarks_and_shares_of_all_tokens():
    table = paper_layout(scores())
    assert list(table.columns) == ["model", "method", "retention"] + BENCHMARK_COLUMNS + ["avg_score", "avg_percent"]
    full = table[table["method"] == "all"].iloc[0]
    assert full["avg_score"] == (60 + 61 + 62 + 63) / 4 and full["avg_percent"] == 100
    half = table[table["method"] == "cacovid"].iloc[0]
    assert half["videomme_short"] == 60 and half["videomme_long"] == 40
    assert abs(half["avg_percent"] - 100 * 51.5 / 61.5) < 1e-9


def test_a_missing_benchmark_leaves_the_average_empty():
    table = paper_layout(scores()[lambda d: d["benchmark"] != "mlvu_test"])
    assert table["avg_score"].isna().all() and table["mlvu_test"].isna().all()


def test_every_number_sits_beside_the_papers_with_the_difference():
    paper = pd.read_csv(REFERENCE / "main_table.csv")
    table = beside_paper(paper_layout(scores()), paper)
    row = table[(table["method"] == "cacovid") & (table["retention"] == 0.25)
                & (table["model"] == "llava_onevision_7b")].iloc[0]
    assert row["longvideobench_paper"] == 56.2 and row["longvideobench_diff"] == round(50.0 - 56.2, 2)
    # every row of the paper's table is in the report, run or not
    assert len(table) >= len(paper)
    cells = markdown_cells(table)
    not_run = cells[(cells["method"] == "fastv") & (cells["model"] == "qwen2_5_vl_3b")].iloc[0]
    assert not_run["longvideobench"].startswith("- (")


def test_the_report_files_and_the_dry_run_banner(tmp_path):
    files = []
    for model in ("llava_onevision_7b", "qwen2_5_vl_3b"):
        files.append(tmp_path / f"{model}.csv")
        scores(model).to_csv(files[-1], index=False)
    write_report(files, [], REFERENCE, tmp_path / "out", dry_run=True, left_out={"qwen2_5_vl_3b": ["fastv: LLaVA only"]})
    out = tmp_path / "out"
    for name in ("main_table.csv", "main_table.md", "efficiency.md", "README.md", "figures/retention_qwen2_5_vl_3b.png"):
        assert (out / name).is_file(), name
    for name in ("main_table.md", "efficiency.md", "README.md"):
        assert "DRY RUN" in (out / name).read_text(), name
    assert "fastv: LLaVA only" in (out / "README.md").read_text()
