"""The paper pipeline's training ablations: each a training run with some `policy.train` settings changed, its policy
evaluated on one benchmark (CaCoVID at every ratio), as the embedded pipeline's ablations compare training switches.

Declared in paper/params.yaml `ablations.runs` (name -> settings to change, e.g. `token_only: {sampling_modes:
[token]}`); empty by default, since each costs a training run. The run's own params file (the paper's with the changes)
is kept beside its policy and results, so that the launcher and the evaluation read exactly what was run.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import yaml

from cacovid_lib.io_utils import KitInputError, write_text_atomic
from cacovid_lib.paper.evaluation_pass import load_stage_model, run_evaluation_stage
from cacovid_lib.paper.policy_source import TRAINING_MODULES, prepare_policy


def ablation_params(params: dict, name: str) -> dict:
    """The paper's params with ablation `name`'s training settings, its model's policy trained, CaCoVID alone evaluated
    on the ablation benchmark."""
    block = params.get("ablations") or {}
    if name not in (block.get("runs") or {}):
        raise KitInputError(f"ablations.runs.{name}: no such ablation (has: {', '.join(block.get('runs') or {}) or 'none'})")
    changed = copy.deepcopy(params)
    changed["policy"]["train"].update(block["runs"][name] or {})
    model = block["model"]
    changed["models"][model]["policy_source"] = "train"
    changed["evaluation"]["methods"] = ["cacovid"]
    changed["run"] = {**changed.get("run", {}), "models": [model], "benchmarks": [block["benchmark"]]}
    return changed


def run_ablation(params: dict, name: str, out_dir, modules=TRAINING_MODULES) -> pd.DataFrame:
    """Train and evaluate ablation `name` under `out_dir` (params.yaml, policy/, results/) -> its scores, one row per
    retention ratio, with the ablation's name and changed settings."""
    out_dir = Path(out_dir)
    changed = ablation_params(params, name)
    params_file = out_dir / "params.yaml"
    write_text_atomic(params_file, yaml.safe_dump(changed, sort_keys=False))
    model, benchmark = params["ablations"]["model"], params["ablations"]["benchmark"]
    prepare_policy(changed, model, out_dir / "policy", lambda p, m: load_stage_model(p, m, "cpu"), params_file, modules)
    scores = run_evaluation_stage(params_file, model, benchmark, out_dir / "policy", out_dir / "results")
    settings = ", ".join(f"{k}={v}" for k, v in (params["ablations"]["runs"][name] or {}).items())
    return scores.assign(ablation=name, settings=settings or "(the recipe)")
