"""The README's results block is what the report stage renders from the committed metrics, and the renderer and the
marker replacement behave as specified."""
import re
from pathlib import Path

import pytest

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.stages.report import (RESULTS_BEGIN, RESULTS_END, current_block, readme_block, replace_block,
                                         results_block, update_readme)

ROOT = Path(__file__).resolve().parents[1]


def test_readme_block_matches_the_committed_metrics():
    readme = (ROOT / "README.md").read_text()
    assert current_block(readme) == readme_block(ROOT / "reports"), (
        "README.md's results block differs from reports/metrics/benchmark.json: rerun the report stage "
        "(dvc repro) or restore the metrics")


def test_readme_has_no_issue_numbers_or_commit_hashes():
    readme = (ROOT / "README.md").read_text()
    assert not re.findall(r"issue [0-9]+|[0-9a-f]{7,}", readme)
    assert len(readme.splitlines()) <= 150


SMALL = {
    "accuracy_all_tokens": 0.9, "accuracy_all_tokens_ci_low": 0.85, "accuracy_all_tokens_ci_high": 0.95,
    "num_test": 1200,
    "cacovid_accuracy_at_0.10": 0.8, "cacovid_accuracy_at_0.10_ci_low": 0.75, "cacovid_accuracy_at_0.10_ci_high": 0.85,
    "cacovid_accuracy_at_0.10_sd": 0.0123,
    "fastv_input_accuracy_at_0.10": 0.81, "fastv_input_accuracy_at_0.10_ci_low": 0.7,
    "fastv_input_accuracy_at_0.10_ci_high": 0.9,
    "fastv_input_accuracy_at_0.05": 0.6, "fastv_input_accuracy_at_0.05_ci_low": 0.5,
    "fastv_input_accuracy_at_0.05_ci_high": 0.7,
    "cacovid_margin_at_0.10": -0.01, "best_baseline_at_0.10": "FastV (input)",
}


def test_renderer_on_a_small_dict():
    block = results_block(SMALL, {"cacovid": "CaCoVID"}, figure="reports/figures/x.png")
    assert block == "\n".join([
        "Accuracy on 1,200 test questions, with its 95% bootstrap interval over the questions; CaCoVID: mean ± sd "
        "over its training seeds. All tokens (no compression): 0.900 [0.850, 0.950].",
        "",
        "| method | 10% retention | 5% retention |",
        "|---|---|---|",
        "| fastv_input | 0.810 [0.700, 0.900] | 0.600 [0.500, 0.700] |",
        "| **CaCoVID** | 0.800 ± 0.012 [0.750, 0.850] | — |",
        "",
        "![Accuracy against retention, every method](reports/figures/x.png)",
    ])


def test_renderer_refuses_metrics_without_methods():
    with pytest.raises(KitInputError):
        results_block({"accuracy_all_tokens": 0.9})


def test_replace_block_keeps_the_text_around_the_markers(tmp_path):
    text = f"head\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\ntail\n"
    assert replace_block(text, "new\n") == f"head\n{RESULTS_BEGIN}\nnew\n{RESULTS_END}\ntail\n"
    with pytest.raises(KitInputError):
        replace_block(text + RESULTS_BEGIN, "new")
    with pytest.raises(KitInputError):
        replace_block(f"{RESULTS_END}\n{RESULTS_BEGIN}\n", "new")
    path = tmp_path / "README.md"
    path.write_text(text)
    assert update_readme(path, "new") is True
    assert current_block(path.read_text()) == "new"
    assert update_readme(path, "new") is False  # unchanged: not rewritten
    fresh = tmp_path / "scratch" / "README.md"
    assert update_readme(fresh, "block") is True and current_block(fresh.read_text()) == "block"
