"""Exploration for issue 21 (not a pipeline stage): does diversity alone find the objects, and would it on tokens as
diverse as the pixels? On the validation split, for each cell's pixels (raw, and with the split's mean cell removed)
and for the projected video tokens of each saved small video LLM given: the nearest-neighbour cosines of
compare/token_geometry.py (an object token's nearest non-object token; a non-object token's nearest other
non-object token at another grid cell) and DivPrune's asked-object coverage at 10% and 5% (compare/coverage.py).
Usage: .venv/bin/python scripts/diversity_reference.py MODEL_DIR [MODEL_DIR ...]"""
import sys

import numpy as np
import torch

from cacovid_lib.compare.baselines import divprune_select, token_budget
from cacovid_lib.compare.coverage import object_coverage
from cacovid_lib.compare.token_geometry import token_geometry
from cacovid_lib.data.schema import asked_objects
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.world import frame_cells
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.loader import load_video_llm

val = load_split("data/world", "val", 8)
video_labels = val.object_labels.reshape(len(val.frames), -1)  # (V, N)
cells_per_frame = val.object_labels.shape[-1]
cells = torch.from_numpy(frame_cells(val.frames, round(cells_per_frame ** 0.5))).float().reshape(*video_labels.shape, -1)
spaces = {"pixels": cells, "pixels, mean cell removed": cells - cells.mean((0, 1))}
for model_dir in sys.argv[1:]:
    spaces[model_dir] = encode_videos(load_video_llm(model_dir, 8), val.frames)[:, :-1]  # (V, N, D)
labels = video_labels[val.video_of_item]  # (n, N) per question
asked = [asked_objects(item) for item in val.items]
print("space | object's nearest non-object | non-object's nearest non-object (other cell) | DivPrune asked kept 10% | 5%")
for name, tokens in spaces.items():
    geometry = token_geometry(tokens, video_labels, cells_per_frame)
    kept = []
    for ratio in (0.1, 0.05):
        k = token_budget(video_labels.shape[1], ratio)
        keeps = np.stack([divprune_select(video, k).numpy() for video in tokens])  # (V, N)
        kept.append(object_coverage(labels, asked, keeps[val.video_of_item])["asked_objects_kept"])
    print(f"{name} | {geometry['object_nearest_non_object_cosine']:.3f} | "
          f"{geometry['non_object_nearest_non_object_cosine']:.3f} | {kept[0]:.3f} | {kept[1]:.3f}", flush=True)
