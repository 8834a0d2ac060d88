"""Policy training from the command line, for `accelerate launch` (one CPU, one GPU, several GPUs or nodes):

    accelerate launch -m cacovid_lib.launch_policy_training --model models/small_vlm --world data/world \\
        --items data/filtered/train.json --out models/policy

Hyper-parameters come from the `policy` block of params.yaml (the same block the notebook stage reads);
`--steps` overrides the step count for quick runs.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch
import yaml


def main(argv=None) -> int:
    from accelerate import Accelerator
    from safetensors.torch import save_file

    from .io_utils import KitInputError
    from .policy_task import train_policy_on_split
    from .train_policy import PolicyTrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local folder of the frozen video LLM")
    parser.add_argument("--world", required=True, help="folder with train.json and the videos")
    parser.add_argument("--items", default=None, help="training items (e.g. the blind-filtered JSON); default <world>/train.json")
    parser.add_argument("--out", required=True, help="policy checkpoint folder")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--num-frames", type=int, default=None, help="default: world.num_frames of params.yaml")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--save-replicas", default=None, help="also save every process's policy weights here (checks DDP sync)")
    args = parser.parse_args(argv)
    try:
        with open(args.params) as f:
            params = yaml.safe_load(f)
        if "train" not in params.get("policy", {}):
            raise KitInputError(f"{args.params}: no policy.train block")
        cfg = PolicyTrainConfig(**params["policy"]["train"])
        if args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        policy, _ = train_policy_on_split(args.model, args.world, args.num_frames or params["world"]["num_frames"], cfg, args.out,
                                          items_file=args.items, reward=params["policy"].get("reward", "multiple_choice"),
                                          accelerator=accelerator, resume=args.resume,
                                          progress=accelerator.is_main_process)
        if args.save_replicas:
            from pathlib import Path

            Path(args.save_replicas).mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items() if "rotary" not in k},
                      f"{args.save_replicas}/process{accelerator.process_index}.safetensors")
    except (KitInputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
