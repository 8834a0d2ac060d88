"""Policy training from the command line, for `accelerate launch` (one CPU, one GPU, several GPUs or nodes).

On the embedded world (the notebook stage's training):

    accelerate launch -m cacovid_lib.cli.launch_policy_training --model models/small_vlm --world data/world \\
        --items data/filtered/train.json --out models/policy

On a real video LLM (LLaVA-OneVision or Qwen2.5-VL) and Video-R1 (video items only, as the release), e.g. on
8 GPUs with the GPU profile (paper/params.yaml; the README's GPU profile has the full commands):

    accelerate launch --config_file configs/accelerate_multi_gpu.yaml -m cacovid_lib.cli.launch_policy_training \\
        --params paper/params.yaml --model llava_onevision_7b --video-r1 Video-R1-filtered.json \\
        --media-root Video-R1-data --out models/policy_llava_ov_7b

Hyper-parameters come from the `policy` block of the params file (`policy.train`, `policy.reward`; with
--video-r1 also `policy.epochs` when `policy.train.steps` is absent or null, and `policy.video_r1`'s json and
media_root as defaults for --video-r1 and --media-root). The number of frames is
`num_frames` of the params file (GPU profile) or `world.num_frames` (embedded). With a GPU-profile params file,
--model may name one of its `models` (path, dtype, attention and frame size then come from there).
`--steps` overrides the step count for quick runs.

What a run leaves in --out besides the policy: `training_health.csv` (one row per optimiser step, appended by the
main process as training goes: rewards per mode, loss, entropies, clip fractions, zero-spread shares, KL, gradient
norm, sample rate, kept tokens per rollout, seconds per step; a resumed run appends after its checkpoint's step),
`training_health.png` (stages.policy_training.policy_training_figure of it) and `training_history.pt`: at the end
the trainer state (whole history, sample rates, last checkpoint's optimizer state) is moved aside from
`trainer_state.pt` to it, so the run's record stays while --resume, which reads trainer_state.pt, starts afresh
(stages.policy_training's `health_log`, which this launcher turns on for --video-r1 and --world).
With --video-r1, a video shorter than num_frames is sampled with repeated frames (as the release samples what a
short clip has) and an unreadable one is replaced by the process's next readable item, so every process still
makes the same steps and collectives; both counts go to the log (stages.policy_training.VideoR1Task).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local folder of the frozen video LLM, or a key of the params file's models")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--world", help="embedded world: folder with train.json and the videos")
    data.add_argument("--video-r1", help="Video-R1 style training JSON (real models; its video items are used); "
                                         "default: policy.video_r1.json of the params file")
    parser.add_argument("--media-root", default=None, help="with --video-r1: the folder its `path`/`video` fields are relative "
                                                           "to; default: policy.video_r1.media_root of the params file")
    parser.add_argument("--items", default=None, help="with --world: training items (e.g. the blind-filtered JSON); default <world>/train.json")
    parser.add_argument("--out", required=True, help="policy checkpoint folder")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--num-frames", type=int, default=None, help="default: num_frames (or world.num_frames) of the params file")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="with --video-r1: the first N items only (smoke runs)")
    parser.add_argument("--dtype", default=None, help="with --video-r1: the frozen LLM's dtype (default: the model's entry, else float32)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--save-replicas", default=None, help="also save every process's policy weights here (checks DDP sync)")
    return parser


def num_frames_of(params: dict, path: str) -> int:
    """`num_frames` of a GPU-profile params file, else `world.num_frames` of the embedded one."""
    from cacovid_lib.io_utils import KitInputError

    value = params.get("num_frames", params.get("world", {}).get("num_frames"))
    if value is None:
        raise KitInputError(f"{path}: no num_frames (nor world.num_frames); pass --num-frames")
    return int(value)


def train_config(params: dict, path: str, video_r1: bool):
    """(PolicyTrainConfig, epochs or None) from the params file's policy block; steps null or absent = whole epochs
    (policy.epochs, default 1), only with --video-r1."""
    from cacovid_lib.io_utils import KitInputError
    from cacovid_lib.method.train_loop import PolicyTrainConfig
    from cacovid_lib.pipeline.params import parse

    if "train" not in params.get("policy", {}):
        raise KitInputError(f"{path}: no policy.train block")
    train = dict(params["policy"]["train"])
    epochs = None
    if train.get("steps") is None:
        if not video_r1:
            raise KitInputError(f"{path}: policy.train.steps is needed for --world")
        train.pop("steps", None)
        epochs = float(params["policy"].get("epochs", 1))
    return parse(PolicyTrainConfig, train, f"{path}: policy.train"), epochs  # a bad key or value: one line naming it


def main(argv=None) -> int:
    from accelerate import Accelerator
    from safetensors.torch import save_file

    from cacovid_lib.io_utils import KitInputError, run_cli
    from cacovid_lib.pipeline.params import read_params
    from cacovid_lib.stages.policy_training import train_policy_on_split, train_policy_on_video_r1

    args = _parser().parse_args(argv)

    def body() -> int:
        params = read_params(args.params)
        video_r1 = params.get("policy", {}).get("video_r1", {})
        if args.world is None:
            args.video_r1 = args.video_r1 or video_r1.get("json")
            args.media_root = args.media_root or video_r1.get("media_root")
            if args.video_r1 is None:
                raise KitInputError(f"--world or --video-r1: one is needed (or policy.video_r1.json in {args.params})")
        cfg, epochs = train_config(params, args.params, args.video_r1 is not None)
        if args.steps is not None:
            cfg, epochs = replace(cfg, steps=args.steps), None
        num_frames = args.num_frames or num_frames_of(params, args.params)
        reward = params["policy"].get("reward", "multiple_choice")
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        if args.video_r1:
            if args.media_root is None:
                raise KitInputError("--media-root: needed with --video-r1 (the folder its media paths are relative to)")
            entry = params.get("models", {}).get(args.model, {"path": args.model})
            frame_size = entry.get("frame_size")
            policy, _ = train_policy_on_video_r1(
                entry["path"], args.video_r1, args.media_root, num_frames, cfg, args.out, reward=reward, epochs=epochs,
                limit=args.limit, dtype=args.dtype or entry.get("dtype", "float32"),
                attn_implementation=entry.get("attn_implementation", "sdpa"),
                frame_size=tuple(frame_size) if frame_size else None, accelerator=accelerator, resume=args.resume,
                progress=accelerator.is_main_process, health_log=True)
        else:
            policy, _ = train_policy_on_split(args.model, args.world, num_frames, cfg, args.out, items_file=args.items,
                                              reward=reward, accelerator=accelerator, resume=args.resume,
                                              progress=accelerator.is_main_process, health_log=True)
        if args.save_replicas:
            from pathlib import Path

            Path(args.save_replicas).mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items() if "rotary" not in k},
                      f"{args.save_replicas}/process{accelerator.process_index}.safetensors")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
