"""Diagnostic (run by hand, not a pipeline stage): how the small video LLM's projected video tokens are spread, which
is what DivPrune's max-min cosine diversity ranks. For the first videos of the test split, the mean cosine between
tokens of two different objects, between an object token and a non-object token (background or clutter), and between
two non-object tokens, and the mean norms. Reads the pipeline's model and world.

    .venv/bin/python scripts/token_geometry.py [NUM_VIDEOS=20]
"""
import sys

import numpy as np
import torch

from cacovid_lib.embedded.split import load_split
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

num_videos = int(sys.argv[1]) if len(sys.argv) > 1 else 20
torch.set_num_threads(1)
vlm = LlavaOneVisionVideoLLM.from_pretrained("models/small_vlm", num_frames=8)
test = load_split("data/world", "test", 8, limit=4 * num_videos)
videos = np.unique(test.video_of_item)[:num_videos]
with torch.no_grad():
    tokens = vlm.encode_video(torch.stack([vlm.preprocess(test.frames[v]) for v in videos]))[:, :-1]  # (B, N, D)
unit = torch.nn.functional.normalize(tokens, dim=-1)
labels = test.object_labels[videos].reshape(len(videos), -1)  # (B, N) object index or -1
rows = {"cosine, two different objects": [], "cosine, object vs non-object": [], "cosine, two non-object tokens": [],
        "norm, object tokens": [], "norm, non-object tokens": []}
for i in range(len(videos)):
    obj = torch.from_numpy(labels[i] >= 0)  # (N,)
    cos = unit[i] @ unit[i].T  # (N, N)
    other_object = torch.from_numpy(labels[i][:, None] != labels[i][None, :]) & obj[:, None] & obj[None, :]
    rows["cosine, two different objects"].append(cos[other_object].mean())
    rows["cosine, object vs non-object"].append(cos[obj][:, ~obj].mean())
    rows["cosine, two non-object tokens"].append(cos[~obj][:, ~obj].mean())
    rows["norm, object tokens"].append(tokens[i][obj].norm(dim=-1).mean())
    rows["norm, non-object tokens"].append(tokens[i][~obj].norm(dim=-1).mean())
print(f"{len(videos)} test videos, {tokens.shape[1]} video tokens each")
for name, values in rows.items():
    print(f"{name}: {float(torch.stack(values).mean()):.3f}")
