"""The paper pipeline's dry run: paper/dvc.yaml, every stage, both models, all four benchmarks, on this CPU.

    python -m cacovid_lib.paper.dry_run [--workdir build/paper-dryrun] [--items 2]     (make paper-dryrun)

1. a DVC project of its own in `workdir` (`dvc init --no-scm`: nothing it writes reaches git) holding a copy of the
   pipeline as committed: paper/dvc.yaml, notebooks/paper/, paper/reference/ and the cacovid_lib it runs;
2. tiny randomly initialised models of the real classes (LlavaOnevisionForConditionalGeneration,
   Qwen2_5_VLForConditionalGeneration), saved with save_pretrained and loaded back by the pipeline as a user's
   local folders are (nothing is downloaded);
3. small fixtures in each benchmark's public layout and a Video-R1 training set, with real MP4s
   (data/benchmark_fixtures.py), one video of each shorter than the frames asked for;
4. paper/params.yaml's settings with those paths, `run.dry_run: true` (every report file says its numbers are
   meaningless), each model's policy trained here (blind filtering, then a few steps of the training launcher on 2
   CPU processes) and one training ablation, one evaluation process, short timings;
5. `dvc repro paper/dvc.yaml` there. Run it again after a kill: finished stages are skipped and an evaluation pass
   resumes from its answers.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cacovid_lib.io_utils import KitInputError, run_cli, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
COPIED = ["cacovid_lib", "notebooks/paper", "paper/dvc.yaml", "paper/reference"]
NUM_FRAMES = 8  # Qwen2.5-VL pairs frames: 4 time steps
GRID_SIDE = 2  # video tokens a side per frame (LLaVA) or per frame pair (Qwen)
# a few training steps at the tiny models' 4 tokens a frame (k = 1), short generated answers
DRY_RUN_TRAINING = {"steps": 2, "items_per_step": 1, "num_generations": 8, "num_iter_for_item": 1, "sample_rate": 0.25,
                    "min_sample_rate": 0.25, "max_sample_rate": 0.5, "reward_max_new_tokens": 8}


def copy_pipeline(workdir: Path) -> None:
    """1. The committed pipeline and the code it runs, copied over the previous copy (outputs are kept)."""
    for rel in COPIED:
        src, dst = ROOT / rel, workdir / rel
        if dst.is_dir():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*.tmp"))
        else:
            shutil.copy2(src, dst)
    if not (workdir / ".dvc").is_dir():
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=workdir, check=True)


def write_tiny_models(folder: Path, policy_source: str = "train") -> dict[str, dict]:
    """2. Both backends at a tiny size, saved as local model folders -> their `models` entries."""
    import torch

    from cacovid_lib.compare.profile import TINY_SHAPE, build_llava_onevision, build_qwen2_5_vl

    entries = {}
    for key, build, extra in (("llava_onevision_7b", build_llava_onevision, {}),
                              ("qwen2_5_vl_3b", build_qwen2_5_vl, {"frame_size": [28 * GRID_SIDE] * 2})):
        path = folder / key
        if not (path / "config.json").is_file():
            torch.manual_seed(0)
            vlm = build(TINY_SHAPE, GRID_SIDE, NUM_FRAMES, "cpu", torch.float32)
            vlm.model.save_pretrained(path)
            vlm.tokenizer.save_pretrained(path)
        entries[key] = {"path": str(path.resolve()), "policy_source": policy_source, "dtype": "float32",
                        "attn_implementation": "sdpa", **extra}
    return entries


def dry_run_params(workdir: Path, items: int, models: list[str] | None = None, benchmarks: list[str] | None = None,
                   ablation: bool = True, policy_source: str = "train") -> dict:
    """4. paper/params.yaml with the tiny models, the fixtures and dry-run sizes (`models`, `benchmarks`: a subset of
    run's, for a quicker check of every stage)."""
    from cacovid_lib.data.benchmark_fixtures import write_benchmark_fixtures, write_video_r1_fixture

    params = yaml.safe_load((ROOT / "paper/params.yaml").read_text())
    params["runtime"] = {"threads": 2}
    params["run"] = {**params["run"], "processes": 1, "limit": None, "dry_run": True}
    params["run"]["models"] = models or params["run"]["models"]
    params["run"]["benchmarks"] = benchmarks or params["run"]["benchmarks"]
    params["num_frames"] = NUM_FRAMES
    params["models"] = write_tiny_models(workdir / "models" / "tiny", policy_source)
    fixtures = write_benchmark_fixtures(workdir / "data" / "benchmarks", items_per_benchmark=items, num_frames=NUM_FRAMES)
    params["benchmarks"] = {name: {k: str(v) for k, v in entry.items()} for name, entry in fixtures.items()}
    params["evaluation"] = {**params["evaluation"], "max_new_tokens": 4}
    video_r1 = write_video_r1_fixture(workdir / "data" / "video_r1", items=4, num_frames=NUM_FRAMES)
    params["blind_filter"] = {**params["blind_filter"], "json": video_r1["json"], "batch_size": 2}
    params["blind_filter"].pop("out", None)  # the policy stage names the filtered file itself
    params["policy"] = {**params["policy"], "processes": 2, "video_r1": video_r1,
                        "train": {**params["policy"]["train"], **DRY_RUN_TRAINING}}
    # one ablation row: the first model trained again with fewer rollouts, evaluated on the first benchmark
    params["ablations"] = {"model": params["run"]["models"][0], "benchmark": params["run"]["benchmarks"][0],
                           "runs": {"rollouts_4": {"num_generations": 4}} if ablation else {}}
    params["efficiency"] = {**params["efficiency"], "items": 1, "repeats": 1}
    return params


def prepare(workdir, items: int = 2, models: list[str] | None = None, benchmarks: list[str] | None = None,
            ablation: bool = True, policy_source: str = "train", memory_shape: tuple[int, int] | None = None) -> Path:
    """Steps 1-4: the dry run's project, ready for `dvc repro paper/dvc.yaml`. `models`, `benchmarks`, `ablation` and
    `policy_source` ("untrained": no training) and `memory_shape` make a quicker run of every stage kind, as the test
    suite's."""
    workdir = Path(workdir).resolve()
    if workdir == ROOT or ROOT in workdir.parents and workdir.relative_to(ROOT).parts[0] not in ("build", "scratch"):
        raise KitInputError(f"{workdir}: the dry run needs a folder of its own (e.g. build/paper-dryrun)")
    workdir.mkdir(parents=True, exist_ok=True)
    copy_pipeline(workdir)
    params = dry_run_params(workdir, items, models, benchmarks, ablation, policy_source)
    if memory_shape:  # (frames, tokens a frame) of the selection-memory table, for a quicker check
        params["efficiency"].update(memory_frames=memory_shape[0], memory_tokens_per_frame=memory_shape[1])
    write_text_atomic(workdir / "paper" / "params.yaml", "# the dry run's params (cacovid_lib/paper/dry_run.py)\n"
                      + yaml.safe_dump(params, sort_keys=False))
    return workdir


def repro(workdir: Path) -> None:
    """5. dvc repro of the copied pipeline, its stages importing the copied cacovid_lib."""
    import os

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")  # `python` = this one
    subprocess.run([sys.executable, "-m", "dvc", "repro", "paper/dvc.yaml"], cwd=workdir, check=True, env=env)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="build/paper-dryrun", help="the dry run's own DVC project (default: %(default)s)")
    parser.add_argument("--items", type=int, default=2, help="items per benchmark fixture (default: %(default)s)")
    args = parser.parse_args(argv)

    def body() -> int:
        workdir = prepare(args.workdir, args.items)
        repro(workdir)
        print(f"dry run done: {workdir / 'reports' / 'paper'}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
