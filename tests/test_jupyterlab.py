"""Notebooks run by hand (JupyterLab starts the kernel in notebooks/) find the project's files and never overwrite a
DVC output: every path parameter says whether the notebook reads or writes it, what it writes goes to scratch/ unless
the stage runner passes the pipeline's path, and a run from notebooks/ leaves `dvc status` as it was."""
import ast
import json
import subprocess
import sys

import papermill as pm
import pytest
from conftest import ROOT

from cacovid_lib.pipeline.code_deps import dvc_stages
from cacovid_lib.pipeline.paths import PIPELINE_PATHS, at_project_root, input_path, project_root, scratch_path, stage_paths
from cacovid_lib.pipeline.stage import run_notebook

STAGES = dvc_stages()  # the pipeline's and the extra stages
PATH_SUFFIXES = ("_dir", "_file", "_metrics")


def _outs(spec: dict) -> list[str]:
    """Every file or folder a dvc.yaml stage writes (outs, metrics, plots), the executed notebook aside."""
    found = []
    for key in ("outs", "metrics", "plots"):
        for entry in spec.get(key, []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            if not path.startswith("reports/notebooks/"):
                found.append(path)
    return found


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_notebook_writes_to_scratch_unless_the_stage_runner_passes_the_pipelines_paths(stage):
    spec = STAGES[stage]
    notebook = ROOT / next(d for d in spec["deps"] if str(d).endswith(".ipynb"))
    declared = pm.inspect_notebook(str(notebook))
    written = []
    for name, param in declared.items():
        if not name.endswith(PATH_SUFFIXES):
            continue
        assert name in PIPELINE_PATHS, f"{notebook.name}: path parameter {name} unknown to paths.PIPELINE_PATHS"
        pipeline, default, role = PIPELINE_PATHS[name], ast.literal_eval(param["default"]), (param["help"].split() or [""])[0].rstrip(":")
        assert role in ("read", "written"), f"{notebook.name}: {name} needs a `# read` or `# written` comment"
        if role == "written":
            written.append(pipeline)
            assert default == scratch_path(pipeline), f"{notebook.name}: {name} written by hand runs to {default}"
            assert any(_under(out, pipeline) for out in _outs(spec)), f"{notebook.name}: {name} is no output of {stage}"
        else:
            assert default == pipeline, f"{notebook.name}: {name} should read the pipeline's {pipeline}"
    for out in _outs(spec):  # each output of the stage is written through a parameter the runner sets
        assert any(_under(out, folder) for folder in written), f"{stage}: {out} written through no `# written` parameter"
    assert set(stage_paths(notebook)) == {n for n in declared if n in PIPELINE_PATHS}


def test_the_project_root_is_found_from_notebooks_and_input_paths_fall_back_to_scratch(tmp_path, monkeypatch):
    assert project_root(ROOT / "notebooks") == ROOT
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert at_project_root() == tmp_path and project_root() == tmp_path
    assert input_path("data/world") == "data/world"  # neither exists: the error that follows names the pipeline's
    (tmp_path / "scratch/data/world").mkdir(parents=True)
    assert input_path("data/world") == "scratch/data/world"  # a hand run's world, while the pipeline has none
    (tmp_path / "data/world").mkdir(parents=True)
    assert input_path("data/world") == "data/world"  # the pipeline's, once it exists


def _dvc_status() -> dict:
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "{}")


@pytest.mark.slow
def test_a_notebook_run_from_the_notebooks_folder_writes_to_scratch_and_changes_no_dvc_output(tmp_path):
    import time

    before, start = _dvc_status(), time.time()
    world = {"seed": 0, "num_frames": 8, "num_videos": {"train": 1, "val": 1, "test": 2}}
    run_notebook(ROOT / "notebooks" / "01-build-world.ipynb", {"world": world}, tmp_path, cwd=ROOT / "notebooks")
    test_json = ROOT / "scratch/data/world/test.json"
    assert test_json.stat().st_mtime >= start and len(json.loads(test_json.read_text())) == 2 * 4  # 4 per video
    assert (ROOT / "scratch/reports/figures/world_samples.png").stat().st_size > 1000
    assert _dvc_status() == before
