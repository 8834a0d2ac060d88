"""Exploration for issue 21 (not a pipeline stage): train the video LLM with params.yaml's vlm recipe and the given
overrides (e.g. aux_tokens=content, the dense captions of every token) into scratch/explore_captions/NAME, then
score validation (all tokens, blind, random 10%) and the projected tokens' geometry there.
Usage: .venv/bin/python scripts/explore_captions.py NAME aux_tokens=content [aux_weight=0.5 ...]
Writes scratch/explore_captions/NAME/result.json (ignored by git and DVC)."""
import json
import pathlib
import sys
import time

from cacovid_lib.compare.token_geometry import token_geometry
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig
from cacovid_lib.embedded.split import load_split
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.loader import load_video_llm
from cacovid_lib.pipeline.params import read_params
from cacovid_lib.pipeline.video_llm_evaluation import evaluate_video_llm
from cacovid_lib.pipeline.video_llm_training import train_video_llm

name = sys.argv[1]
overrides = {}
for arg in sys.argv[2:]:
    key, value = arg.split("=")
    overrides[key] = value if key in ("aux_tokens", "curriculum_start", "caption_detail") else (float(value) if "." in value else int(value))
out = pathlib.Path("scratch/explore_captions") / name
params = read_params("params.yaml")
num_frames = params["world"]["num_frames"]
train_cfg = VLMTrainConfig(**{**params["vlm"]["train"], **overrides})
t0 = time.time()
train_video_llm("data/world", num_frames, SmallVLMConfig(**params["vlm"]["model"]), train_cfg, out / "model")
result = {"name": name, "overrides": overrides, "vlm_s": round(time.time() - t0)}
vlm = load_video_llm(out / "model", num_frames)
val = load_split("data/world", "val", num_frames)
table = evaluate_video_llm(vlm, val, [0.1], seed=0)
result["val"] = {k: round(float(v), 4) for k, v in table.loc["overall"].items()}
labels = val.object_labels.reshape(len(val.frames), -1)
result["projected_geometry_val"] = token_geometry(encode_videos(vlm, val.frames)[:, :-1], labels)
print(json.dumps(result, indent=1), flush=True)
(out / "result.json").write_text(json.dumps(result, indent=1))
