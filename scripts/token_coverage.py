"""Which objects do the kept tokens show? For each method at a retention ratio, on the test split: the share of
questions whose kept tokens include the asked-about object, the mean number of the video's 4 objects covered,
and the share of kept tokens on no object (background or clutter). A diagnostic for the benchmark's results,
run by hand after `make repro`:

    .venv/bin/python scripts/token_coverage.py --retention 0.05
"""
import argparse
import json

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare import registry
from cacovid_lib.embedded.split import load_split
from cacovid_lib.method.policy import load_policy
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.params import read_params


def coverage(split, keeps: torch.Tensor) -> dict:
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (items, N) object index, -1 none
    kept = keeps.numpy()
    target = np.array([it["target_object"] for it in split.items])
    on_target = ((labels == target[:, None]) & kept).any(1)
    objects = [len(set(labels[i][kept[i]]) - {-1}) for i in range(len(split))]
    return {"target_object_kept": float(on_target.mean()), "objects_covered_of_4": float(np.mean(objects)),
            "kept_on_no_object": float((labels[kept] == -1).mean())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retention", type=float, default=0.05)
    args = parser.parse_args()
    vlm = LlavaOneVisionVideoLLM.from_pretrained("models/small_vlm", num_frames=8)
    policy = load_policy("models/policy", vlm.language_model).eval()
    imp_ratio = json.load(open("reports/metrics/policy.json"))["imp_ratio"]
    test = load_split("data/world", "test", 8)
    embeds = encode_videos(vlm, test.frames)[test.video_of_item]  # (items, N+1, D)
    settings = registry.MethodSettings(**(read_params("params.yaml").get("methods") or {}), imp_ratio=imp_ratio)
    pixels_of = lambda idx: torch.stack([vlm.preprocess(test.frames[v]) for v in test.video_of_item[idx]])
    ctx = registry.MethodContext(vlm, test.items, pixels_of=pixels_of, policy=policy)
    ctx.shared = registry.shared_scores(ctx, settings)
    # every registered method; the merging ones' kept positions hold their merged tokens
    rules = {m.name: registry.build(m.key, ctx, args.retention, settings) for m in registry.compressing_methods()}
    rows = {}
    for name, rule in rules.items():
        keeps = []
        for start in range(0, len(test), 64):
            idx = np.arange(start, min(start + 64, len(test)))
            sel = rule(idx, embeds[idx])
            keeps.append(sel.keeps.cpu())
        rows[name] = coverage(test, torch.cat(keeps))
    print(f"retention {args.retention}, test split ({len(test)} questions)")
    print(pd.DataFrame(rows).T.round(3).to_markdown())


if __name__ == "__main__":
    main()
