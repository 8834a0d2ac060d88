"""The efficiency profile (cacovid_lib/compare/profile.py, scripts/gpu_profile.py) runs its real code on CPU at tiny
sizes: every row is there, timed rows are timed the asked number of times, skipped rows say why, and the CLI writes
CSV and Markdown."""
import importlib.util
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cacovid_lib.compare import efficiency, registry
from cacovid_lib.compare.efficiency import median_ms_and_peak_mb
from cacovid_lib.compare.profile import TABLE_COLUMNS, redundant_video_embeds
from conftest import ROOT

TINY = ["--model", "tiny", "--frames", "4", "--tokens-per-frame", "16", "--text-tokens", "64", "--ratios", "0.25", "0.1",
        "--repeats", "2"]
RATIOS = [0.25, 0.1]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    run = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_profile.py"), *TINY, "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run, out


@pytest.mark.slow
def test_cli_writes_every_row_timed_or_skipped(cli_run):
    run, out = cli_run
    table = pd.read_csv(out / "profile.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == TABLE_COLUMNS
    assert set(table["model"]) == {"tiny LLaVA-OneVision", "tiny Qwen2.5-VL"}
    for model, rows in table.groupby("model"):
        prefill = rows[rows["measurement"] == "prefill"]
        assert {(m, r) for m, r in zip(prefill["method"], prefill["retention"])} >= {("All tokens", 1.0)} | {
            ("kept tokens", r) for r in RATIOS}
        # every method the registry holds right now has one selection row per ratio: timed, or skipped with a reason
        selection = rows[rows["measurement"] == "selection"]
        expected = {(m.name, r) for m in registry.compressing_methods() for r in RATIOS}
        assert sorted(zip(selection["method"], selection["retention"])) == sorted(expected)
        # a timed row is a median of --repeats runs (tiny rows are far below the slow-row cap), with a time and a
        # peak memory (on CPU the resident-set growth, never negative); its share is over the all-token prefill
        timed = rows[rows["repeats"] > 0]
        assert (timed["repeats"] == 2).all(), timed[["method", "repeats"]]
        assert timed["median_ms"].notna().all() and (timed["peak_memory_mb"] >= 0).all()
        full_ms = float(prefill.loc[prefill["method"] == "All tokens", "median_ms"].iloc[0])
        # share * all-token ms = the row's ms, up to the CSV's rounding (ms to 2 decimals, the share to 4)
        share = timed["share_of_all_token_prefill"]
        assert ((share * full_ms - timed["median_ms"]).abs() <= 1.01 * (0.005 * (1 + share) + 5e-5 * full_ms)).all()
        assert prefill["analytic_tflops"].notna().all() and rows.loc[rows["measurement"] != "prefill",
                                                                      "analytic_tflops"].isna().all()
        untimed = rows[rows["repeats"] == 0]
        assert untimed["median_ms"].isna().all() and untimed["peak_memory_mb"].isna().all()
        assert untimed["note"].str.startswith("skipped: ").all(), untimed[["method", "note"]]  # no 'error:' rows
    # what can run without pixels is timed on both backends; what needs them says so
    by = table.set_index(["model", "method", "retention"])
    for model in ("tiny LLaVA-OneVision", "tiny Qwen2.5-VL"):
        for name in ("CaCoVID", "DivPrune"):
            assert by.loc[(model, name, 0.1), "repeats"].max() > 0
    assert "pixels" in by.loc[("tiny LLaVA-OneVision", "VisionZip", 0.1), "note"]
    fastv = table[(table["model"] == "tiny LLaVA-OneVision") & (table["method"] == "FastV")]
    assert set(fastv["measurement"]) == {"selection", "prefill"}  # FastV prunes inside the LLM: its own prefill row
    assert "LLaVA-OneVision only" in by.loc[("tiny Qwen2.5-VL", "FastV", 0.1), "note"]
    # the kept-token budget is floor(rho * N), N = 4 * 16
    kept = table[(table["method"] == "kept tokens")].set_index(["model", "retention"])["llm_video_tokens"]
    assert kept.loc[("tiny Qwen2.5-VL", 0.25)] == 16 and kept.loc[("tiny Qwen2.5-VL", 0.1)] == 6
    markdown = (out / "profile.md").read_text()
    assert "| tiny Qwen2.5-VL" in markdown and "All tokens" in markdown
    assert "| model" in run.stdout  # the one table, printed


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_profile", ROOT / "scripts/gpu_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args, error", [
    (["--tokens-per-frame", "15"], "error: --tokens-per-frame: 15 is not a square (h = w tokens per frame)"),
    (["--ratios", "0.1", "1.5"], "error: retention: 1.5 is outside (0, 1]"),
    (["--text-tokens", "3"], "error: --text-tokens: 3 is below the prompt template's own"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, error):
    assert load_script().main(["--model", "tiny", "--frames", "2", "--tokens-per-frame", "4", *args, "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error)
    assert not (tmp_path / "profile.csv").exists()


@pytest.mark.parametrize("similarity", [0.0, 0.5, 0.92])
def test_random_video_tokens_are_as_redundant_in_time_as_asked(similarity):
    grid, dim = (3, 4, 4), 4096
    video = redundant_video_embeds(grid, dim, similarity, scale=0.02, generator=torch.Generator().manual_seed(0))
    assert video.shape == (3 * 16 + 1, dim)
    frames = video[:-1].view(3, 16, dim)
    cos = F.cosine_similarity(frames[1:], frames[:-1], dim=-1)  # (2, 16) same position, consecutive frames
    assert abs(float(cos.mean()) - similarity) < 0.03
    assert abs(float(video.std()) - 0.02) < 0.002  # the scale of the model's own random word embeddings


def test_median_and_peak_come_from_the_same_timed_runs():
    calls, seconds = [], iter([0.002, 0.005, 0.003])  # the three timed calls' clock readings: 2, 5 and 3 ms

    def fake_timed_s(fn, device=None):
        return fn(), next(seconds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(efficiency, "timed_s", fake_timed_s)
        ms, peak = median_ms_and_peak_mb(lambda: calls.append(torch.ones(256, 256).sum()), "cpu", repeats=3, warmup=1)
    assert len(calls) == 4  # one warm-up and three timed calls, inside the one peak measurement
    assert ms == pytest.approx(3.0)  # the median of the timed calls only
    assert peak >= 0
