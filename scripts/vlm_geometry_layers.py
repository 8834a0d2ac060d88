"""Where a video LLM's token cone forms (issue 21; not a pipeline stage): the pair cosines of
compare/token_geometry.py on the validation split at two depths of a saved small video LLM: its vision tower's
features pooled to video-token cells (what the projector reads) and its projected video tokens (what the LLM and
every pruning rule read), each also after subtracting the split's mean token (how much of the cone is one shared
offset), and two references: the pixels of each cell (mean removed), and the geometry the dense captions imply if
each caption word were a direction of its own (a token = the sum of its caption words' one-hot vectors), with the
fine captions of vlm.train.caption_detail (a model trained with them).
Usage: .venv/bin/python scripts/vlm_geometry_layers.py [MODEL_DIR=models/small_vlm] [SPLIT=val]"""
import sys

import torch

from cacovid_lib.compare.token_geometry import token_geometry
from cacovid_lib.embedded.small_vlm import content_word_targets
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.vision_pretraining import cell_features
from cacovid_lib.embedded.world import frame_cells
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
        print(f"{name + (', mean removed' if centred else ''):38s}" + " / ".join(f"{geometry[k]:.3f}" for k in keys))
offset = projected.reshape(-1, projected.shape[-1]).mean(0).norm() / projected.norm(dim=-1).mean()
print(f"projected tokens: the split's mean token has {float(offset):.2f} of a token's mean norm")
v, n = labels.shape
grid = int(round(split.object_labels.shape[-1] ** 0.5))  # cells per side
pixel_cells = torch.from_numpy(frame_cells(split.frames, grid)).float().reshape(v, n, -1)  # (V, N, c*c*3)
words = content_word_targets(split, vlm.tokenizer, "fine")  # (V, N, 2); the model's tokenizer holds the caption words
implied = torch.zeros(v, n, len(vlm.tokenizer)).scatter_add_(-1, words, torch.ones(words.shape))  # (V, N, vocab)
for name, tokens in [("pixels of each cell, mean removed", pixel_cells - pixel_cells.mean((0, 1))),
                     ("fine captions, one word one direction", implied)]:
    geometry = token_geometry(tokens, labels)
    print(f"{name:38s}" + " / ".join(f"{geometry[k]:.3f}" for k in keys))
