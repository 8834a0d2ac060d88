"""The CPU pins: the environment that makes every float result the same on any x86-64 CPU with AVX2.

Floats differ between machines not by chance but by code path: PyTorch picks its vectorised kernels by the CPU's
instruction set, MKL its GEMM branch, oneDNN its ISA, numpy its SIMD loops, and a reduction split over another
number of threads sums in another order. Each library documents a switch that fixes its choice; pinned together,
with a fixed thread count, the same code path runs on every x86-64 CPU that has AVX2:

    ATEN_CPU_CAPABILITY       PyTorch's kernels at the AVX2 level, also on AVX-512 CPUs
    MKL_CBWR                  MKL's conditional numerical reproducibility: its AVX2 branch, strict
    ONEDNN_MAX_CPU_ISA        oneDNN (convolutions, some matmuls) no higher than AVX2
    NPY_DISABLE_CPU_FEATURES  numpy's AVX-512 dispatch targets off (numpy >= 2 names them X86_V4, AVX512_ICL, ...)
    OMP_NUM_THREADS, MKL_NUM_THREADS   the thread count of params.yaml's `runtime.threads`; MKL_DYNAMIC and
                              OMP_DYNAMIC off, so the libraries never choose fewer threads by load

Each is read once, when its library loads: the pins must be in the environment before torch or numpy is imported.
The stage runner, the Makefile and the test suite all set them from `pinned_environment` (below), and a notebook's
kernel inherits them from the runner. What they cannot cover: CPUs without AVX2 or not x86-64 (ARM), GPUs, and other
versions of torch, numpy or MKL (pyproject.toml pins torch; a different wheel can carry different kernels).

This module imports nothing but the standard library at import time, so it can run before anything else.

    python -m cacovid_lib.cpu_pins --params params.yaml   # the pins as `KEY=VALUE` words for `env` (the Makefile's use)
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys

# The pins that do not depend on the thread count. Values are the libraries' own documented spellings.
FIXED_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
}

DEFAULT_THREADS = 2  # params.yaml's runtime.threads; the tests use the same


def pinned_environment(threads: int = DEFAULT_THREADS) -> dict[str, str]:
    """Every pin as an environment variable, the thread count included."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"runtime.threads: expected a whole number >= 1, got {threads!r}")
    return {**FIXED_PINS, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def runtime_threads(params_file) -> int:
    """A params file's `runtime.threads`: the thread count every stage runs at (DEFAULT_THREADS where there is none)."""
    import yaml

    from cacovid_lib.io_utils import KitInputError

    try:
        with open(params_file) as f:
            params = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise KitInputError(f"{params_file}: cannot be read ({str(err).splitlines()[0]})") from None
    threads = (params.get("runtime") or {}).get("threads", DEFAULT_THREADS)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise KitInputError(f"{params_file}: runtime.threads: expected a whole number >= 1, got {threads!r}")
    return threads


def apply_pins(threads: int = DEFAULT_THREADS) -> dict[str, str]:
    """Set the pins in this process's environment (they override what is there), for this process's own imports and
    every subprocess it starts (a papermill kernel, a worker). Refuses when torch or numpy is already loaded with other
    values, since then the pins would be in the environment but not in effect."""
    pins = pinned_environment(threads)
    loaded = [name for name in ("torch", "numpy") if name in sys.modules]
    differing = [key for key, value in pins.items() if os.environ.get(key) != value]
    if loaded and differing:
        raise RuntimeError(f"cpu_pins: {', '.join(loaded)} already imported; set the pins before importing it "
                           f"(differing: {', '.join(differing)})")
    os.environ.update(pins)
    return pins


def cpu_description() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and its core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def runtime_record() -> dict:
    """What a stage ran under: the pins in its environment, the kernel level torch actually chose, the thread counts,
    the library versions and the CPU. Written into a stage's metrics, so a reader sees under what the numbers were made.
    `pins_in_effect` is False when a pin is missing or torch did not take its kernel level."""
    import numpy
    import torch

    pins = {key: os.environ.get(key) for key in pinned_environment(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))}
    capability = torch.backends.cpu.get_cpu_capability()
    expected = pinned_environment(torch.get_num_threads())
    return {
        "pins": pins,
        "pins_in_effect": pins == expected and capability == FIXED_PINS["ATEN_CPU_CAPABILITY"].upper(),
        "torch_cpu_capability": capability,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu": cpu_description(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print the CPU pins as KEY=VALUE words for `env`.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    source.add_argument("--params", help="a params file whose runtime.threads sets the thread count")
    args = parser.parse_args(argv)
    threads = runtime_threads(args.params) if args.params else args.threads
    print(" ".join(shlex.quote(f"{k}={v}") for k, v in pinned_environment(threads).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
