"""Where a notebook reads and writes, whether `dvc repro` or a person in JupyterLab runs it.

- `dvc repro` (stage.py) passes every path parameter a notebook declares: the pipeline's own files, PIPELINE_PATHS.
- Run by hand, a notebook keeps its parameters cell's defaults: it reads the pipeline's outputs (`input_path`: or
  those of an earlier hand run, in scratch/, where the pipeline's do not exist yet) and writes under scratch/,
  which git and DVC ignore, so a hand run never overwrites a DVC output.
- JupyterLab starts the kernel in notebooks/, so every notebook first calls `at_project_root()`: its relative paths
  then mean the same thing in JupyterLab, under papermill and in a terminal.
"""
from __future__ import annotations

import os
from pathlib import Path

SCRATCH = "scratch"
"""hand runs' outputs, below the project root (in .gitignore; no dvc.yaml stage names it)"""

PIPELINE_PATHS = {
    "world_dir": "data/world",
    "model_dir": "models/small_vlm",
    "vlm_metrics": "reports/metrics/vlm.json",
    "seed_models_dir": "models/vlm_seeds",
    "filtered_file": "data/filtered/train.json",
    "policy_dir": "models/policy",
    "policy_metrics": "reports/metrics/policy.json",
    "metrics_dir": "reports/metrics",
    "tables_dir": "reports/tables",
    "plots_dir": "reports/plots",
    "figures_dir": "reports/figures",
    "reports_dir": "reports",
    "report_file": "reports/README.md",
    "readme_file": "README.md",
}
"""notebook path parameter -> the pipeline's file or folder, relative to the project root"""

_KIT_CHECKOUT = Path(__file__).resolve().parents[2]


def project_root(start=None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) that holds a dvc.yaml, else the
    checkout this kit was installed from."""
    here = Path(start or os.getcwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / "dvc.yaml").is_file()), _KIT_CHECKOUT)


def at_project_root() -> Path:
    """Make the project root the working directory (JupyterLab's kernel starts in notebooks/); returns it."""
    root = project_root()
    os.chdir(root)
    return root


def scratch_path(path) -> str:
    """Where a hand run writes what the pipeline writes at `path`."""
    return f"{SCRATCH}/{Path(path).as_posix()}"


def input_path(path) -> str:
    """An input of a notebook: `path` where it exists (the pipeline's output); else the output of an earlier hand
    run (scratch/<path>) where that exists; else `path` unchanged, so that the error that follows names the
    pipeline's file."""
    if Path(path).exists() or Path(path).is_absolute():
        return str(path)
    return scratch_path(path) if Path(scratch_path(path)).exists() else str(path)


def stage_paths(notebook, root=".") -> dict[str, str]:
    """The path parameters the stage runner passes to `notebook`: each PIPELINE_PATHS entry the notebook's
    parameters cell declares, below `root` (the project root for `dvc repro`, a temporary folder in the tests)."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    return {name: str(Path(root, PIPELINE_PATHS[name])) for name in declared if name in PIPELINE_PATHS}
