"""Notebooks run by hand (JupyterLab starts the kernel in notebooks/) find the project's files and never overwrite a
DVC output: every path parameter says whether the notebook reads or writes it, what it writes goes to scratch/ unless
the stage runner passes the pipeline's path, and a run from notebooks/ leaves `dvc status` as it was."""
import ast
import re
import json
import subprocess
import sys

import papermill as pm
import pytest
from conftest import ROOT, drawn_png

from cacovid_lib.pipeline.code_deps import dvc_stages
from cacovid_lib.pipeline.paths import PIPELINE_PATHS, at_project_root, input_path, project_root, scratch_path, stage_paths
from cacovid_lib.pipeline.stage import run_notebook

STAGES = dvc_stages()  # the pipeline's and the extra stages
PATH_SUFFIXES = ("_dir", "_file", "_metrics")
IN_GIT = {"README.md"}  # the report stage rewrites its results block in place; git tracks it, so DVC cannot


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


@pytest.mark.parametrize("stage", sorted(s for s in STAGES if not s.startswith("paper/")))  # the embedded pipeline's
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
            assert pipeline in IN_GIT or any(_under(out, pipeline) for out in _outs(spec)), \
                f"{notebook.name}: {name} is no output of {stage}"
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
    drawn_png(ROOT / "scratch/reports/figures/world_samples.png")  # decodes, not blank
    assert _dvc_status() == before


# ---- a notebook saved by JupyterLab after Run All (autosave included) keeps its stored bytes -------------------
KIT_SERVER_CONFIG = ROOT / ".jupyter" / "jupyter_server_config.py"


def _kit_server_config():
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(KIT_SERVER_CONFIG.name, path=str(KIT_SERVER_CONFIG.parent)).load_config()


def _run_all_and_save(notebooks, name: str, server_config) -> None:
    """What JupyterLab does to a notebook opened from notebooks/ (`make lab`'s root) and run: the kernel's spec and
    language_info, execution counts, outputs and cell timings enter the model, which the server saves through
    jupytext's contents manager (the server's default class, AsyncLargeFileManager, as jupyterlab_jupytext builds it)."""
    import asyncio

    import nbformat
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext import build_async_jupytext_contents_manager_class

    from traitlets.config import Config

    config = Config(server_config)
    config.NotebookNotary.db_file = ":memory:"  # the trust database stays out of the user's data folder
    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(root_dir=str(notebooks), config=config)

    async def run_and_save():
        nb = (await manager.get(name))["content"]
        nb.metadata.kernelspec = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
        nb.metadata.language_info = {"name": "python", "version": "3.12.3", "file_extension": ".py"}
        for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
            cell.execution_count = count
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
            cell.metadata.execution = {"iopub.execute_input": "2025-01-01T00:00:00.000Z"}
        await manager.save({"type": "notebook", "content": nb}, name)

    asyncio.run(run_and_save())


def _changed_by_a_hand_run(tmp_path, server_config, with_jupytext_toml: bool) -> list[str]:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir(parents=True)
    stored = sorted(p for p in (ROOT / "notebooks").iterdir() if p.suffix in (".ipynb", ".py"))
    for path in stored:
        (notebooks / path.name).write_bytes(path.read_bytes())
    if with_jupytext_toml:
        (notebooks / "jupytext.toml").write_bytes((ROOT / "notebooks" / "jupytext.toml").read_bytes())
    for ipynb in (p for p in stored if p.suffix == ".ipynb"):
        _run_all_and_save(notebooks, ipynb.name, server_config)
    return [p.name for p in stored if (notebooks / p.name).read_bytes() != p.read_bytes()]


@pytest.mark.filterwarnings("ignore:Overriding existing pre_save_hook")  # jupytext's class loads the config twice
def test_a_notebook_saved_after_a_hand_run_keeps_the_stored_bytes_of_the_notebook_and_its_py_twin(tmp_path):
    """The .ipynb files are the stages' DVC deps and tracked by git, so byte-identical files after the save mean
    `git status` and `dvc status` unchanged by a hand run."""
    from traitlets.config import Config

    assert _changed_by_a_hand_run(tmp_path / "kit", _kit_server_config(), with_jupytext_toml=True) == []
    # the same save without the kit's settings writes the run into both files: the check above can fail
    unconfigured = _changed_by_a_hand_run(tmp_path / "bare", Config(), with_jupytext_toml=False)
    assert {p.rsplit(".", 1)[1] for p in unconfigured} == {"ipynb", "py"}


def test_make_lab_serves_the_notebooks_folder_with_the_kits_server_config():
    done = subprocess.run(["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    assert re.search(r"JUPYTER_CONFIG_PATH=\S*\.jupyter\b", command), command
    assert command.rstrip().endswith("lab notebooks/"), command  # root: notebooks/, where jupytext.toml is found
