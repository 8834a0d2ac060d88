"""The GPU smoke run (scripts/gpu_smoke.py) runs its real code on CPU at tiny sizes: every step writes its file with
every row (no method fails), and README.md names the device and says the weights are random."""
import importlib.util

import pandas as pd
import pytest
import torch

from cacovid_lib.compare import profile, registry
from cacovid_lib.compare.profile import TABLE_COLUMNS
from conftest import ROOT

RATIOS = [0.25, 0.1]
BENCHMARKS = ["longvideobench", "mlvu_dev", "mlvu_test", "videomme"]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "scripts/gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_smoke")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite's CPUs are shared
    try:
        assert load_script().main(["--size", "tiny", "--device", "cpu", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    return out


def test_selection_has_every_method_timed_or_skipped(smoke_run):
    table = pd.read_csv(smoke_run / "selection.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == TABLE_COLUMNS
    selection = table[table["measurement"] == "selection"]
    expected = {(m.name, r) for m in registry.compressing_methods() for r in RATIOS}
    assert sorted(zip(selection["method"], selection["retention"])) == sorted(expected)
    untimed = selection[selection["repeats"] == 0]
    assert untimed["note"].str.startswith("skipped: ").all(), untimed[["method", "note"]]  # no 'error:' rows
    assert (table.loc[table["repeats"] > 0, "median_ms"] > 0).all()
    assert profile.MAX_ROW_SECONDS == 10.0  # the smoke run's lower cap is given back


def test_pass_scores_one_row_per_run_and_benchmark(smoke_run):
    table = pd.read_csv(smoke_run / "pass_scores.csv", keep_default_na=False, na_values=[""])
    script = load_script()
    assert list(table.columns[:len(script.PASS_COLUMNS)]) == script.PASS_COLUMNS
    assert all(c.startswith("category ") for c in table.columns[len(script.PASS_COLUMNS):])
    runs = [("all", 1.0)] + [(m.key, r) for m in registry.compressing_methods() for r in RATIOS]
    assert list(zip(table["method"], table["retention"]))[::len(BENCHMARKS)] == runs  # in run order
    assert sorted(set(table["benchmark"])) == BENCHMARKS and len(table) == len(runs) * len(BENCHMARKS)
    assert table["note"].isna().all(), table.loc[table["note"].notna(), ["method", "benchmark", "note"]]
    # every item answered, the short last video of each benchmark included (its frames repeated, never skipped)
    assert (table["answered"] == 2).all() and (table["skipped"] == 0).all()
    assert table["score"].between(0, 100).all() and (table["seconds_per_item"] > 0).all()
    # floor(rho * N) of N = 4 frames x 16 tokens
    kept = table.set_index(["method", "retention"])["mean_kept_tokens"]
    assert (kept.loc[("all", 1.0)] == 64).all() and (kept.loc[("divprune", 0.1)] == 6).all()
    assert table["peak_memory_mb"].isna().all()  # CUDA's peak only; on CPU left empty


def test_efficiency_has_the_four_methods(smoke_run):
    table = pd.read_csv(smoke_run / "efficiency.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == load_script().EFFICIENCY_COLUMNS
    assert list(table["method"]) == ["all", "cacovid", "divprune", "fastv"]
    assert table["note"].isna().all(), table["note"]
    assert (table["items"] == 2).all() and (table["repeats"] == 3).all() and (table["device"] == "cpu").all()
    assert list(table["kept_tokens"]) == [64, 16, 16, 16]
    assert (table[["prefill_ms", "prefill_all_tokens_ms"]] > 0).all().all()


def test_readme_names_the_device_and_each_step(smoke_run):
    readme = (smoke_run / "README.md").read_text()
    assert "- device: CPU" in readme and f"torch {torch.__version__}" in readme
    assert "weights are random" in readme and "Complete:" in readme
    for n, name in enumerate(["selection.csv", "pass_scores.csv", "efficiency.csv"], 1):
        assert f"| {n} | {name} | " in readme


def test_7b_without_a_gpu_is_one_line(tmp_path, capsys):
    assert load_script().main(["--size", "7b", "--device", "cpu", "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: --size 7b: needs a CUDA GPU (on cpu use --size tiny)"]
    assert not any(tmp_path.iterdir())
