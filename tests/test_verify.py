"""`make verify` names each stage identical, identical but for run times, or what result differs."""
import hashlib
import json
import subprocess

import yaml

from cacovid_lib.pipeline.verify import verify


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _lock(root, paths_by_stage):
    stages = {stage: {"cmd": "x", "outs": [{"path": p, "md5": _md5(root / p)} for p in paths]}
              for stage, paths in paths_by_stage.items()}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False))


def _committed_run(tmp_path):
    (tmp_path / "reports/metrics").mkdir(parents=True)
    (tmp_path / "reports/notebooks").mkdir(parents=True)
    metrics = {"accuracy": 0.9, "selection_ms": 5.0, "runtime_cpu": "A"}
    (tmp_path / "reports/metrics/m.json").write_text(json.dumps(metrics))
    (tmp_path / "reports/notebooks/n.ipynb").write_text("{}")
    (tmp_path / "world.bin").write_bytes(b"\x89PNG\r\n\x1a\nabc")  # not text, as a figure
    layout = {"evaluate": ["reports/metrics/m.json", "reports/notebooks/n.ipynb"], "build": ["world.bin"]}
    _lock(tmp_path, layout)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    return metrics, layout


def test_a_rerun_that_differs_only_in_times_and_cpu_is_identical(tmp_path):
    metrics, layout = _committed_run(tmp_path)
    (tmp_path / "reports/metrics/m.json").write_text(json.dumps({**metrics, "selection_ms": 6.0, "runtime_cpu": "B"}))
    (tmp_path / "reports/notebooks/n.ipynb").write_text('{"time": 1}')
    _lock(tmp_path, layout)
    ok, lines = verify(tmp_path)
    assert ok
    assert lines[0].split()[:2] == ["evaluate", "identical"] and "selection_ms" in lines[0] and "runtime_cpu" in lines[0]
    assert lines[1].split() == ["build", "identical"]


def test_a_moved_result_or_output_is_named(tmp_path):
    metrics, layout = _committed_run(tmp_path)
    (tmp_path / "reports/metrics/m.json").write_text(json.dumps({**metrics, "accuracy": 0.8}))
    (tmp_path / "world.bin").write_bytes(b"\x89PNG\r\n\x1a\nabd")
    _lock(tmp_path, layout)
    ok, lines = verify(tmp_path)
    assert not ok
    assert "DIFFERS: reports/metrics/m.json: accuracy" in lines[0]
    assert "DIFFERS: world.bin" in lines[1]


def test_a_stage_not_rerun_is_missing(tmp_path):
    _, layout = _committed_run(tmp_path)
    _lock(tmp_path, {"build": layout["build"]})
    ok, lines = verify(tmp_path)
    assert not ok and "missing" in lines[0]


def test_a_markdown_table_is_compared_cell_by_cell():
    from cacovid_lib.pipeline.verify import classify, differing_fields

    committed = "Caption.\n\n| method | accuracy | selection_ms |\n|:--|--:|--:|\n| A | 0.9 | 5.1 |\n| B | 0.8 | 1.0 |\n"
    timed = committed.replace("5.1", "5.3")
    assert differing_fields("t.md", committed, timed) == ["A.selection_ms"]
    assert classify("t.md", ["A.selection_ms"]) == ([], ["t.md: timings (A.selection_ms)"])
    moved = committed.replace("0.8", "0.7")
    assert classify("t.md", differing_fields("t.md", committed, moved)) == (["t.md: B.accuracy"], [])
    prose = "- takes 5.58 ms of the prefill\n"
    assert classify("r.md", differing_fields("r.md", prose, prose.replace("5.58", "6.01")))[0] == []
