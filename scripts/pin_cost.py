"""What the CPU pins cost: the video LLM's training steps (the pipeline's longest stage) timed with and without them.

Renders a small world once, then trains the embedded recipe's video LLM for a few steps in fresh processes, once with
the pins (cacovid_lib/cpu_pins.py) and once with the machine's own choices, alternating, and prints the median
seconds per step of each. The thread count is the same in both (runtime.threads), so what is measured is the code path.

    python scripts/pin_cost.py --steps 40 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cacovid_lib.cpu_pins import DEFAULT_THREADS, FIXED_PINS, pinned_environment

TRAIN = r"""
import sys, time
if sys.argv[1] == "pinned":
    from cacovid_lib.cpu_pins import apply_pins
    apply_pins(int(sys.argv[4]))
import torch
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig
from cacovid_lib.stages.video_llm_training import train_video_llm
steps = int(sys.argv[3])
start = time.perf_counter()
train_video_llm(sys.argv[2], 8, SmallVLMConfig(),
                VLMTrainConfig(steps=steps, warmup_steps=5, curriculum_steps=steps // 2, vision_steps=steps // 2,
                               offset_from_step=steps // 2), sys.argv[2] + "/model")
print("SECONDS_PER_STEP", (time.perf_counter() - start) / steps, torch.backends.cpu.get_cpu_capability())
"""


def seconds_per_step(mode: str, world: str, steps: int, threads: int) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in FIXED_PINS}
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"})
    out = subprocess.run([sys.executable, "-c", TRAIN, mode, world, str(steps), str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    line = next(l for l in out.stdout.splitlines() if l.startswith("SECONDS_PER_STEP"))
    _, value, capability = line.split()
    return float(value), capability


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (half with the tower training)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode, alternating")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args(argv)
    pinned_environment(args.threads)  # validates the count
    from cacovid_lib.embedded.world import build_world

    with tempfile.TemporaryDirectory() as tmp:
        world = str(Path(tmp) / "world")
        build_world(world, seed=0, num_videos={"train": 24}, workers=1)
        times: dict[str, list[float]] = {"pinned": [], "unpinned": []}
        capability = {}
        for _ in range(args.repeats):
            for mode in times:
                value, capability[mode] = seconds_per_step(mode, world, args.steps, args.threads)
                times[mode].append(value)
    for mode, values in times.items():
        print(f"{mode:>9}: {statistics.median(values):.3f} s/step (median of {len(values)}; torch kernels "
              f"{capability[mode]}; runs {', '.join(f'{v:.3f}' for v in values)})")
    ratio = statistics.median(times["pinned"]) / statistics.median(times["unpinned"])
    print(f"pinned / unpinned: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
