"""How the policy's selection cost compares with an all-token LLM forward as the LLM gets deeper. The policy is one
decoder layer of the LLM's own class (docs/method.md §2), so its share of a forward falls roughly as 1 / depth.
Timing needs no training: each row builds the small video LLM of the embedded default with random weights at another
depth or width and times `compare.cacovid.selection_cost` (notebook 07's measurement) on one test video at 10%
retention.
A diagnostic run by hand after `make repro` (it reads the world's test split):

    .venv/bin/python scripts/selection_cost_by_depth.py
"""
import argparse
from dataclasses import replace

import pandas as pd
import torch

from cacovid_lib.compare.cacovid import selection_cost
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, build_small_vlm
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.tokenizer import build_tokenizer
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.params import VLMParams, parse, read_params



def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    parse_args(argv)
    torch.set_num_threads(1)  # the pipeline's stages time with one thread
    default = parse(SmallVLMConfig, parse(VLMParams, read_params("params.yaml")["vlm"], "vlm").model, "vlm.model")
    # (hidden, layers, heads, kv heads): the embedded default (params.yaml vlm.model), 12 layers, and the depth of
    # LLaVA-OneVision-7B's Qwen2-7B (28 layers), at the default's width
    shapes = [(default.text_hidden, default.text_layers, default.text_heads, default.text_kv_heads),
              (default.text_hidden, 12, default.text_heads, default.text_kv_heads),
              (default.text_hidden, 28, default.text_heads, default.text_kv_heads)]
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    test = load_split("data/world", "test", 8, limit=4)
    rows = []
    for hidden, layers, heads, kv_heads in shapes:
        cfg = replace(default, text_hidden=hidden, text_layers=layers, text_heads=heads, text_kv_heads=kv_heads)
        model = build_small_vlm(tokenizer, cfg).eval()
        vlm = LlavaOneVisionVideoLLM(model, tokenizer, 8)
        policy = CompressionPolicy.from_llm(model.model.language_model).eval()
        embeds = encode_videos(vlm, test.frames)  # (V, N+1, D)
        cost = selection_cost(vlm, policy, test.items[0], embeds[test.video_of_item[0]], 0.1, 1.0, repeats=30)
        rows.append({"llm_hidden": hidden, "llm_layers": layers,
                     "llm_params_m": round(sum(p.numel() for p in model.model.language_model.parameters()) / 1e6, 2),
                     **cost})
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
