"""Exploration for issue 21 (not a pipeline stage): pretrain the vision tower with one objective
(embedded.vision_pretraining), measure its pooled features' geometry on validation, then train the video LLM on it
frozen (params.yaml's vlm recipe with vision_steps 0) and score validation (all tokens, blind, random 10%) and the
projected tokens' geometry.
Usage: THREADS=1 .venv/bin/python scripts/explore_vision_pretraining.py NAME objective=contrastive steps=1500 \
           [mask_ratio=0.25 noise_std=0.05 temperature=0.1 frames_per_step=64 lr=0.001 head_hidden=128] [vlm_steps=2500]
           [vision_steps=0: the VLM fine-tunes the pretrained tower for this many steps first] [skip_vlm=1]
Writes scratch/explore_tower/NAME/result.json (ignored by git and DVC)."""
import json
import os
import pathlib
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from cacovid_lib.compare.token_geometry import token_geometry
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.tokenizer import build_tokenizer
from cacovid_lib.embedded.vision_pretraining import (VisionPretrainConfig, build_vision_tower, cell_features,
                                                     pretrain_vision_tower)
from cacovid_lib.embedded.world import WorldSpec
from cacovid_lib.io_utils import read_json
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.params import read_params
from cacovid_lib.pipeline.video_llm_evaluation import evaluate_video_llm

name = sys.argv[1]
kw = dict(a.split("=") for a in sys.argv[2:])
vlm_steps = int(kw.pop("vlm_steps", 2500))
vision_steps = int(kw.pop("vision_steps", 0))
skip_vlm = kw.pop("skip_vlm", "0") == "1"
types = {f.name: f.type for f in VisionPretrainConfig.__dataclass_fields__.values()}
cfg = VisionPretrainConfig(**{k: (v if k == "objective" else (int(v) if "int" in str(types[k]) else float(v))) for k, v in kw.items()})
out = pathlib.Path("scratch/explore_tower") / name
out.mkdir(parents=True, exist_ok=True)
params = read_params("params.yaml")
num_frames = params["world"]["num_frames"]
model_cfg = SmallVLMConfig(**params["vlm"]["model"])
spec = WorldSpec(**read_json("data/world/world_spec.json"))
train = load_split("data/world", "train", num_frames)
val = load_split("data/world", "val", num_frames)
tokenizer = build_tokenizer(spec)
vlm_model = build_small_vlm(tokenizer, model_cfg, seed=0)
vlm = LlavaOneVisionVideoLLM(vlm_model, tokenizer, num_frames)
pixels = torch.cat([vlm.preprocess(v) for v in train.frames])  # (V*t, 3, S, S)
val_pixels = torch.cat([vlm.preprocess(v) for v in val.frames])
val_labels = val.object_labels.reshape(len(val.frames), -1)
result = {"name": name, "pretrain": {k: getattr(cfg, k) for k in types}}
tower = build_vision_tower(model_cfg)
t0 = time.time()
if cfg.steps:
    hist = pretrain_vision_tower(tower, pixels, cfg)
    result["pretrain_loss_last50"] = sum(h["loss"] for h in hist[-50:]) / 50
result["pretrain_s"] = round(time.time() - t0)
cells = cell_features(tower, val_pixels).view(len(val.frames), -1, model_cfg.vision_hidden)
result["tower_geometry_val"] = token_geometry(cells, val_labels)
print(json.dumps(result, indent=1), flush=True)
(out / "result.json").write_text(json.dumps(result, indent=1))
if skip_vlm:
    sys.exit()
vlm_model.model.vision_tower.load_state_dict(tower.state_dict())
tcfg = VLMTrainConfig(**{**params["vlm"]["train"], "vision_steps": vision_steps, "steps": vlm_steps,
                         "questions_per_video": 2 if vision_steps else 1, "threads": None})
t0 = time.time()
train_small_vlm(vlm, train, tcfg)
result["vlm_s"] = round(time.time() - t0)
table = evaluate_video_llm(vlm, val, [0.1], seed=0)
result["val"] = {k: round(float(v), 4) for k, v in table.loc["overall"].items()}
result["projected_geometry_val"] = token_geometry(encode_videos(vlm, val.frames)[:, :-1], val_labels)
if vision_steps:  # the fine-tuned tower's own cells
    cells = cell_features(vlm_model.model.vision_tower, val_pixels).view(len(val.frames), -1, model_cfg.vision_hidden)
    result["tower_geometry_val_after_vlm"] = token_geometry(cells, val_labels)
print(json.dumps(result, indent=1), flush=True)
(out / "result.json").write_text(json.dumps(result, indent=1))
