"""Run one stage of the paper's pipeline (paper/dvc.yaml): execute its notebook with papermill.

    python -m cacovid_lib.paper.stage notebooks/paper/02-evaluate.ipynb --model llava_onevision_7b --benchmark videomme

The params file (default paper/params.yaml) is read and validated first (paper/params.py: a misspelled key, a wrong
type or a placeholder path stops here, before any model loads); the notebook gets it whole as its `params` parameter,
with the stage's `model` and `benchmark`. The CPU pins (cpu_pins.py, `runtime.threads`) are set before the notebook's
kernel starts. The executed copy goes to reports/paper/notebooks/, named after the stage's matrix item
(02-evaluate@llava_onevision_7b-videomme.ipynb). The embedded pipeline's runner (pipeline/stage.py) does the same
for params.yaml's stages.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cacovid_lib.cpu_pins import apply_pins, runtime_threads
from cacovid_lib.io_utils import KitInputError, run_cli
from cacovid_lib.pipeline.stage import run_notebook

EXECUTED_DIR = "reports/paper/notebooks"


def executed_name(notebook, model: str | None, benchmark: str | None) -> str:
    item = "-".join(x for x in (model, benchmark) if x)
    return Path(notebook).stem + (f"@{item}" if item else "") + ".ipynb"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--params", default="paper/params.yaml")
    parser.add_argument("--model")
    parser.add_argument("--benchmark")
    parser.add_argument("--ablation", help="a key of ablations.runs (the ablation stage)")
    parser.add_argument("--executed-dir", default=EXECUTED_DIR)
    args = parser.parse_args(argv)
    def body() -> int:
        apply_pins(runtime_threads(args.params))  # before papermill's kernel (or the params' checks) load torch or numpy
        from cacovid_lib.paper.params import read_gpu_params

        params = read_gpu_params(args.params)
        for flag, block in (("model", "models"), ("benchmark", "benchmarks")):
            value = getattr(args, flag)
            if value is not None and value not in (params.get(block) or {}):
                raise KitInputError(f"{args.params}: --{flag} {value}: not a key of `{block}`")
        if args.ablation is not None and args.ablation not in ((params.get("ablations") or {}).get("runs") or {}):
            raise KitInputError(f"{args.params}: --ablation {args.ablation}: not a key of `ablations.runs`")
        parameters = {"params": params, "params_file": args.params, "model": args.model or "",
                      "benchmark": args.benchmark or "", **({"ablation": args.ablation} if args.ablation else {})}
        run_notebook(args.notebook, parameters, args.executed_dir,
                     name=executed_name(args.notebook, args.model, args.benchmark or args.ablation))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
