"""The efficiency profile at real size (cacovid_lib/compare/profile.py): prefill with every and with the kept video
tokens, and every registered method's selection time and peak memory, on LLaVA-OneVision-7B- and Qwen2.5-VL-7B-shaped
models with random weights (bf16 on a GPU, no download). Prints one table; writes OUT/profile.csv and OUT/profile.md.
On one H200-class GPU (both models, the defaults: 32 frames x 196 tokens + 128 text tokens):

    .venv/bin/python scripts/gpu_profile.py --out reports/gpu_profile

On CPU at tiny sizes (what the test runs): --model tiny --frames 4 --tokens-per-frame 16 --text-tokens 64
"""
import argparse
import sys
import time

import torch

from cacovid_lib.compare.profile import MODELS, profile
from cacovid_lib.io_utils import run_cli, save_csv, write_text_atomic


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", choices=list(MODELS), default=["llava_onevision_7b", "qwen2_5_vl_7b"],
                   help="models to profile, one after the other ('tiny': both backends at tiny sizes, for CPU)")
    p.add_argument("--frames", type=int, default=32, help="video frames (one token grid per frame)")
    p.add_argument("--tokens-per-frame", type=int, default=196, help="video tokens per frame, a square (196 = 14 x 14)")
    p.add_argument("--text-tokens", type=int, default=128, help="prompt tokens around the video")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.1], help="retention ratios")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per row (median), after warm-up")
    p.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    p.add_argument("--out", required=True, help="folder for profile.csv and profile.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        start = time.perf_counter()
        table = profile(args.model, args.frames, args.tokens_per_frame, args.text_tokens, tuple(args.ratios), args.repeats,
                        args.device)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
        header = (f"Efficiency profile on {where} ({time.perf_counter() - start:.0f} s in all): random-weight models, "
                  f"{args.frames} frames x {args.tokens_per_frame} video tokens + {args.text_tokens} text tokens, "
                  f"medians of up to {args.repeats} runs after warm-up; peak memory is CUDA's allocator peak over the "
                  "weights (on CPU the peak resident set). `scripts/gpu_profile.py "
                  + " ".join(sys.argv[1:] if argv is None else argv) + "`")
        shown = table.round({"median_ms": 2, "peak_memory_mb": 1, "share_of_all_token_prefill": 4, "analytic_tflops": 2})
        markdown = shown.to_markdown(index=False)
        save_csv(shown, f"{args.out}/profile.csv")
        write_text_atomic(f"{args.out}/profile.md", header + "\n\n" + markdown + "\n")
        print(header + "\n\n" + markdown)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
