"""Check a user's setup for the paper's pipeline before any GPU time is spent: one line per problem.

    python -m cacovid_lib.paper.check --params paper/params.yaml          (the first step of `make paper`)

Reads the params file into its validated dataclasses (a misspelled key or a wrong type stops here), then checks what
`run` names: every path still a `/path/to/` placeholder, each model folder (a config.json of a supported model type),
each policy source (the released checkpoint's policy shards, a kit policy folder), and each benchmark's annotations
and videos (data/benchmarks.py check_benchmark_data: missing or undecodable videos, duplicate ids, answers outside
the options). Prints `file: item: what is wrong` lines and exits 2 if there is any, else one line saying all is well.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cacovid_lib.data.benchmarks import check_benchmark_data
from cacovid_lib.io_utils import KitInputError, run_cli
from cacovid_lib.paper.params import DEFAULTS, PLACEHOLDER, read_gpu_params


def setup_problems(params: dict, params_file="paper/params.yaml") -> list[str]:
    """Every problem of the setup `params` describes, one line each ([] when the pipeline can run)."""
    from cacovid_lib.models.loader import model_type, resolve_model_folder
    from cacovid_lib.models.release_import import check_checkpoint_files

    run = params.get("run") or {}
    problems = []
    for key in run.get("models", []):
        entry = params["models"][key]
        for field in ("path", "release_checkpoint", "policy"):
            if str(entry.get(field, "")).startswith(PLACEHOLDER):
                problems.append(f"{params_file}: models.{key}.{field}: {entry[field]} is a placeholder; replace it with "
                                f"the path of your local copy")
        try:
            model_type(resolve_model_folder(entry["path"]))
        except KitInputError as err:
            problems.append(f"{params_file}: models.{key}.path: {err}")
        source = entry.get("policy_source")
        try:
            if source == "release" and not str(entry["release_checkpoint"]).startswith(PLACEHOLDER):
                check_checkpoint_files(entry["release_checkpoint"])
            if source == "folder" and not (Path(entry["policy"]) / "policy.safetensors").is_file():
                raise KitInputError(f"{entry['policy']}: not a kit policy folder (no policy.safetensors)")
        except KitInputError as err:
            problems.append(f"{params_file}: models.{key}: {err}")
    ablations = params.get("ablations") or {}
    trains = any(params["models"][k].get("policy_source") == "train" for k in run.get("models", [])) or \
        bool(ablations.get("runs"))
    if trains:  # the policy stage or an ablation trains: Video-R1 must be there
        for where, value in (("blind_filter.json", (params.get("blind_filter") or {}).get("json")),
                             ("policy.video_r1.media_root", ((params.get("policy") or {}).get("video_r1") or {}).get("media_root"))):
            if value is None or str(value).startswith(PLACEHOLDER):
                problems.append(f"{params_file}: {where}: {value} is a placeholder or missing; a model trains its policy here")
            elif not Path(value).exists():
                problems.append(f"{params_file}: {where}: {value} not found")
    benchmarks = {}
    named = list(run.get("benchmarks", []))  # and the ones the efficiency table and the ablations read
    named += [b for b in ((params.get("efficiency") or {}).get("benchmark"),
                          ablations.get("benchmark") if ablations.get("runs") else None) if b and b not in named]
    for name in named:
        entry = params["benchmarks"][name]
        placeholders = [f for f in ("annotations", "video_root") if str(entry.get(f, "")).startswith(PLACEHOLDER)]
        problems += [f"{params_file}: benchmarks.{name}.{f}: {entry[f]} is a placeholder; replace it with the path of "
                     f"your local copy" for f in placeholders]
        if not placeholders:
            benchmarks[name] = entry
    if not benchmarks:  # every one still a placeholder: said above, nothing on disk to check
        return problems
    return problems + check_benchmark_data(benchmarks, params.get("num_frames", DEFAULTS["num_frames"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="paper/params.yaml")
    args = parser.parse_args(argv)

    def body() -> int:
        problems = setup_problems(read_gpu_params(args.params), args.params)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"{len(problems)} problem(s): fix them before `make paper`", file=sys.stderr)
            return 2
        print(f"{args.params}: the models, policies and benchmarks it names are in place")
        return 0

    return run_cli(body)

if __name__ == "__main__":
    sys.exit(main())
