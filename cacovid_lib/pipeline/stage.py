"""Run one DVC stage: execute its notebook with papermill, parameters taken from params.yaml.

    python -m cacovid_lib.pipeline.stage train_vlm

looks the stage up in dvc.yaml, executes its notebook (its first `.ipynb` dep) with the params the
stage declares (`vlm` passes the whole block as a dict parameter `vlm`; `world.num_frames` passes
`world = {"num_frames": ...}`) and the pipeline's paths (paths.stage_paths: a notebook run by hand writes to
scratch/ instead), and writes the executed copy to reports/notebooks/.
A `foreach` stage (train_policy: one run per seed of `policy.seeds`) is run one item at a time, as DVC names it:
`python -m cacovid_lib.pipeline.stage train_policy@1`; the item is passed as the notebook parameter `seed`.
The extra stages (extras/dvc.yaml, outside the default `dvc repro`) run the same way with `--dvc-file extras/dvc.yaml`.
A `KitInputError` raised inside the notebook is reported as its one-line message, not a traceback.

Before anything loads torch or numpy, the runner sets the CPU pins (cacovid_lib/cpu_pins.py) with params.yaml's
`runtime.threads`; the notebook's kernel inherits them. After the notebook, each metrics file the stage declares gets
`runtime_*` entries: the pins, the kernel level torch took, the thread count, the library versions and the CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cacovid_lib.cpu_pins import apply_pins, runtime_threads
from cacovid_lib.io_utils import KitInputError, atomic_path, read_json, write_json_atomic
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


def _substitute(value, item: str):
    """A foreach stage's `do` block with `${item}` replaced by the item."""
    if isinstance(value, dict):
        return {_substitute(k, item): _substitute(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, item) for v in value]
    return value.replace("${item}", item) if isinstance(value, str) else value


def stage_spec(dvc_file, stage: str) -> tuple[str, list[str]]:
    """(notebook, declared param names) of a dvc.yaml stage; `name@item` for one item of a foreach stage. The notebook
    is relative to the dvc.yaml's folder (its deps are relative to the stage's `wdir`, which extras/dvc.yaml sets to
    the project root)."""
    stages = read_params(dvc_file).get("stages", {})
    name, _, item = stage.partition("@")
    if name not in stages:
        raise KitInputError(f"{dvc_file}: no stage named {name} (has: {', '.join(stages)})")
    spec = stages[name]
    if ("foreach" in spec) != bool(item):
        raise KitInputError(f"{dvc_file}: stage {name} " + (f"runs once per item of its foreach: name one, as {name}@ITEM"
                                                             if "foreach" in spec else "has no foreach items"))
    spec = _substitute(spec["do"], item) if item else spec
    notebooks = [d for d in spec.get("deps", []) if str(d).endswith(".ipynb")]
    if not notebooks:
        raise KitInputError(f"{dvc_file}: stage {stage} has no notebook among its deps")
    notebook = (Path(spec.get("wdir", ".")) / notebooks[0]).as_posix()  # deps are relative to the stage's wdir
    return notebook.removeprefix("./"), [p for p in spec.get("params", []) if isinstance(p, str)]


def stage_metrics(dvc_file, stage: str) -> list[str]:
    """The metrics files a dvc.yaml stage declares (relative to the stage's wdir, as its deps)."""
    stages = read_params(dvc_file).get("stages", {})
    name, _, item = stage.partition("@")
    spec = _substitute(stages[name]["do"], item) if item else stages[name]
    wdir = Path(dvc_file).parent / spec.get("wdir", ".")
    return [str(wdir / (next(iter(m)) if isinstance(m, dict) else m)) for m in spec.get("metrics", [])]


def record_runtime(metrics_files: list[str]) -> None:
    """Add what the stage ran under (cpu_pins.runtime_record) to each of its metrics files, as `runtime_*` keys."""
    from cacovid_lib.cpu_pins import runtime_record
    from cacovid_lib.pipeline.metrics import flat

    record = flat({"runtime": runtime_record()})  # runtime_cpu, runtime_pins_MKL_CBWR, ...: metrics stay flat
    for path in metrics_files:
        if Path(path).is_file():
            write_json_atomic(path, {**read_json(path), **record})


def stage_runs(dvc_file, params_file) -> list[str]:
    """Every stage run of dvc.yaml in its order, a foreach stage once per item (`train_policy@0`, ...); its items are
    a list or a `${block.key}` of `params_file`, as DVC resolves them."""
    runs = []
    for name, spec in read_params(dvc_file).get("stages", {}).items():
        items = spec.get("foreach")
        if items is None:
            runs.append(name)
            continue
        if isinstance(items, str) and items.startswith("${") and items.endswith("}"):
            items = load_params(params_file, [items[2:-1]])
            for key in spec["foreach"][2:-1].split("."):
                items = items[key]
        runs += [f"{name}@{item}" for item in items]
    return runs


def stage_parameters(dvc_file, stage: str, params_file, root=".") -> tuple[str, dict]:
    """(notebook, its papermill parameters) of a dvc.yaml stage: the params it declares, read from `params_file`,
    its path parameters below `root`, and for one item of a foreach stage the item as `seed`."""
    notebook, names = stage_spec(dvc_file, stage)
    notebook = str(Path(dvc_file).parent / notebook)  # dvc.yaml's deps are relative to its folder
    if not Path(notebook).is_file():
        raise KitInputError(f"{notebook}: notebook not found")
    item = stage.partition("@")[2]
    names = [n for n in names if n.split(".")[0] != "runtime"]  # read by the runner itself (apply_pins), not the notebook
    return notebook, {**load_params(params_file, names), **stage_paths(notebook, root), **({"seed": int(item)} if item else {})}


def executed_name(notebook, stage: str) -> str:
    """The executed copy's file name: the notebook's, with a foreach item after an @ (06-train-policy@1.ipynb)."""
    item = stage.partition("@")[2]
    return Path(notebook).stem + (f"@{item}" if item else "") + ".ipynb"


def run_notebook(notebook, parameters: dict, executed_dir="reports/notebooks", cwd=".", name: str | None = None) -> Path:
    """Execute `notebook` with papermill; the executed copy appears atomically in `executed_dir` (as `name`, default
    the notebook's own file name)."""
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise KitInputError(f"{notebook}: notebook not found")
    out = Path(executed_dir) / (name or notebook.name)
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
        apply_pins(runtime_threads(args.params))  # before papermill's kernel (or anything here) loads torch or numpy
        notebook, parameters = stage_parameters(args.dvc_file, args.stage, args.params)
        run_notebook(notebook, parameters, args.executed_dir, name=executed_name(notebook, args.stage))
        record_runtime(stage_metrics(args.dvc_file, args.stage))
    except KitInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
