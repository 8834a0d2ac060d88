"""Run one DVC stage: execute its notebook with papermill, parameters taken from params.yaml.

    python -m cacovid_lib.pipeline.stage train_vlm

looks the stage up in dvc.yaml, executes its notebook (its first `.ipynb` dep) with the params the
stage declares (`vlm` passes the whole block as a dict parameter `vlm`; `world.num_frames` passes
`world = {"num_frames": ...}`) and the pipeline's paths (paths.stage_paths: a notebook run by hand writes to
scratch/ instead), and writes the executed copy to reports/notebooks/.
A `KitInputError` raised inside the notebook is reported as its one-line message, not a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cacovid_lib.io_utils import KitInputError, atomic_path
from cacovid_lib.pipeline.params import read_params
from cacovid_lib.pipeline.paths import stage_paths


def load_params(path, names: list[str]) -> dict:
    """Notebook parameters for the declared param names (`block` or dotted `block.key.subkey`)."""
    params = read_params(path)
    out: dict = {}
    for name in names:
        keys = name.split(".")
        value = params
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                raise KitInputError(f"{path}: no parameter {'.'.join(keys[:depth + 1])}")
            value = value[key]
        target = out
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return out


def stage_spec(dvc_file, stage: str) -> tuple[str, list[str]]:
    """(notebook, declared param names) of a dvc.yaml stage."""
    stages = read_params(dvc_file).get("stages", {})
    if stage not in stages:
        raise KitInputError(f"{dvc_file}: no stage named {stage} (has: {', '.join(stages)})")
    spec = stages[stage]
    notebooks = [d for d in spec.get("deps", []) if str(d).endswith(".ipynb")]
    if not notebooks:
        raise KitInputError(f"{dvc_file}: stage {stage} has no notebook among its deps")
    return notebooks[0], [p for p in spec.get("params", []) if isinstance(p, str)]


def stage_parameters(dvc_file, stage: str, params_file, root=".") -> tuple[str, dict]:
    """(notebook, its papermill parameters) of a dvc.yaml stage: the params it declares, read from `params_file`,
    and its path parameters below `root`."""
    notebook, names = stage_spec(dvc_file, stage)
    notebook = str(Path(dvc_file).parent / notebook)  # dvc.yaml's deps are relative to its folder
    if not Path(notebook).is_file():
        raise KitInputError(f"{notebook}: notebook not found")
    return notebook, {**load_params(params_file, names), **stage_paths(notebook, root)}


def run_notebook(notebook, parameters: dict, executed_dir="reports/notebooks", cwd=".") -> Path:
    """Execute `notebook` with papermill; the executed copy appears atomically in `executed_dir`."""
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise KitInputError(f"{notebook}: notebook not found")
    out = Path(executed_dir) / notebook.name
    with atomic_path(out) as tmp:
        try:
            pm.execute_notebook(str(notebook), str(tmp), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                                progress_bar=False,
                                log_output=True)
        except pm.PapermillExecutionError as err:
            if err.ename == "KitInputError":
                raise KitInputError(err.evalue) from None
            raise
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="a stage name of dvc.yaml")
    parser.add_argument("--dvc-file", default="dvc.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--executed-dir", default="reports/notebooks")
    args = parser.parse_args(argv)
    try:
        notebook, parameters = stage_parameters(args.dvc_file, args.stage, args.params)
        run_notebook(notebook, parameters, args.executed_dir)
    except KitInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
