"""Where a video LLM's token cone forms (issue 21; not a pipeline stage): the pair cosines of
compare/token_geometry.py on the validation split at two depths of a saved small video LLM: its vision tower's
features pooled to video-token cells (what the projector reads) and its projected video tokens (what the LLM and
every pruning rule read), each also after subtracting the split's mean token (how much of the cone is one shared
offset).
Usage: .venv/bin/python scripts/vlm_geometry_layers.py [MODEL_DIR=models/small_vlm] [SPLIT=val]"""
import sys

import torch

from cacovid_lib.compare.token_geometry import token_geometry
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.vision_pretraining import cell_features
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

model_dir = sys.argv[1] if len(sys.argv) > 1 else "models/small_vlm"
split_name = sys.argv[2] if len(sys.argv) > 2 else "val"
vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=8)
split = load_split("data/world", split_name, 8)
labels = split.object_labels.reshape(len(split.frames), -1)  # (V, N)
pixels = torch.cat([vlm.preprocess(v) for v in split.frames])  # (V*t, 3, S, S)
cells = cell_features(vlm.model.model.vision_tower, pixels).view(len(split.frames), labels.shape[1], -1)  # (V, N, C)
projected = encode_videos(vlm, split.frames)[:, :-1]  # (V, N, D)
keys = ("non_object_pair_cosine", "object_pair_cosine", "object_vs_non_object_cosine")
print(f"{model_dir}, {split_name} split ({len(split.frames)} videos): " + " / ".join(keys))
for name, tokens in [("tower cells", cells), ("projected tokens", projected)]:
    for centred in (False, True):
        geometry = token_geometry(tokens - tokens.mean((0, 1)) if centred else tokens, labels)
        print(f"{name + (', mean removed' if centred else ''):34s}" + " / ".join(f"{geometry[k]:.3f}" for k in keys))
