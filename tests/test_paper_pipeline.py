"""The paper's GPU pipeline on this CPU: the dry run of paper/dvc.yaml (papermill runs the real notebooks under DVC),
and the evaluation pass's sharding, merging and resuming on a tiny Qwen2.5-VL of the real class."""
import json

import pandas as pd
import pytest
import torch

from cacovid_lib.compare import registry
from cacovid_lib.data.benchmark_fixtures import write_benchmark_fixtures
from cacovid_lib.data.benchmarks import BENCHMARKS
from cacovid_lib.models.loader import load_video_llm
from cacovid_lib.paper import dry_run
from cacovid_lib.paper.check import setup_problems
from cacovid_lib.paper.evaluation_pass import evaluation_pass, merge_pass, pass_runs
from cacovid_lib.paper.report import BENCHMARK_COLUMNS
from conftest import QWEN_FRAME

FRAMES = 4


@pytest.mark.slow
def test_the_dry_run_runs_every_stage_and_writes_the_report(tmp_path):
    # every stage kind on one model and one benchmark; training is the launcher's own test (test_launcher_robustness)
    workdir = dry_run.prepare(tmp_path / "dry", items=1, models=["llava_onevision_7b"], benchmarks=["videomme"],
                              ablation=False, policy_source="untrained", memory_shape=(4, 16))
    dry_run.repro(workdir)
    report = workdir / "reports" / "paper"
    for name in ("main_table.csv", "main_table.md", "efficiency.md", "README.md", "selection_memory.csv",
                 "figures/retention_llava_onevision_7b.png", "efficiency/llava_onevision_7b.csv",
                 "scores/llava_onevision_7b-videomme.csv"):
        assert (report / name).is_file(), name
    for name in ("main_table.md", "efficiency.md", "README.md"):
        assert "DRY RUN" in (report / name).read_text(), name
    table = pd.read_csv(report / "main_table.csv")
    assert {c + suffix for c in BENCHMARK_COLUMNS for suffix in ("", "_paper", "_diff")} <= set(table.columns)
    scores = pd.read_csv(report / "scores/llava_onevision_7b-videomme.csv")
    methods = [m for m in dry_run.yaml.safe_load((workdir / "paper/params.yaml").read_text())["evaluation"]["methods"]]
    assert len(scores) == 1 + 4 * (len(methods) - 1)  # all tokens once, every other method at the four ratios
    assert (scores["answered"] == 1).all()


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    torch.set_num_threads(1)
    return load_video_llm(qwen_dir, FRAMES, frame_size=QWEN_FRAME)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    entry = write_benchmark_fixtures(tmp_path_factory.mktemp("bench"), items_per_benchmark=3, num_frames=FRAMES)["videomme"]
    return BENCHMARKS["videomme"](entry["annotations"], entry["video_root"])


def answers(folder) -> dict:
    return {(r["method"], r["retention"], r["problem_id"]): r["predicted"] for f in sorted(folder.glob("*.jsonl"))
            for r in map(json.loads, f.read_text().splitlines())}


def test_two_shards_give_the_one_process_answers_and_a_pass_resumes(qwen, items, tmp_path):
    runs = pass_runs(["all", "random", "divprune"], [0.5], qwen=True)
    settings = registry.MethodSettings()
    evaluation_pass(qwen, items, runs, tmp_path / "one", settings=settings, max_new_tokens=2, progress=False)
    for rank in (0, 1):
        evaluation_pass(qwen, items, runs, tmp_path / "two", settings=settings, max_new_tokens=2, rank=rank,
                        world_size=2, progress=False)
    assert answers(tmp_path / "two") == answers(tmp_path / "one") and len(answers(tmp_path / "one")) == 3 * len(runs)
    merged = merge_pass(tmp_path / "two", items, runs, "tiny", "videomme")
    assert list(merged["method"]) == ["all", "random", "divprune"] and (merged["answered"] == 3).all()
    # a killed pass: the last answer of one run is lost; the rerun answers exactly that one, nothing else
    file = tmp_path / "one" / "random-0.5.rank0.jsonl"
    lines = file.read_text().splitlines()
    file.write_text("\n".join(lines[:-1]) + "\n")
    before = {f.name: f.read_text() for f in (tmp_path / "one").glob("*.jsonl")}
    evaluation_pass(qwen, items, runs, tmp_path / "one", settings=settings, max_new_tokens=2, progress=False)
    after = {f.name: f.read_text() for f in (tmp_path / "one").glob("*.jsonl")}
    assert {n for n in after if after[n] != before[n]} == {"random-0.5.rank0.jsonl"}
    assert len(after["random-0.5.rank0.jsonl"].splitlines()) == 3


def test_a_llava_only_method_is_refused_for_qwen():
    with pytest.raises(Exception, match="fastv"):
        pass_runs(["fastv"], [0.5], qwen=True)


def test_the_setup_check_names_each_placeholder_and_passes_a_complete_setup(tmp_path):
    params = dry_run.yaml.safe_load((dry_run.ROOT / "paper/params.yaml").read_text())
    problems = setup_problems(params, "paper/params.yaml")
    assert any("models.llava_onevision_7b.path" in p and "placeholder" in p for p in problems)
    assert any("benchmarks.videomme.annotations" in p and "placeholder" in p for p in problems)
    good = dry_run.dry_run_params(tmp_path, items=1)
    assert setup_problems(good) == []
