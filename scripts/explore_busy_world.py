"""Exploration for issue 15 (not a pipeline stage): one development run on the busy world (embedded.world.
busy_world_spec) through the notebook-02 code path (train_small_vlm), then validation accuracy with all tokens /
blind / random 10% (and 25%), per question type.
Usage: .venv/bin/python scripts/explore_busy_world.py RUN_NAME grid=6 layers=6 steps=1200 batch_size=16 \
           vision_steps=400 curriculum_steps=400 questions_per_video=2 eval_every=300 [hidden=128 heads=4 kv_heads=2] [no_counting=1 | weights=1,1,1,0.25,0.25 | original=1 grid=4 | unique=6] [types=a,b,...]
(THREADS=1 in the environment: one torch thread)
Writes the world and the run under scratch/explore/ (ignored by git and DVC)."""
import json
import os
import pathlib
import sys
import time

import numpy as np
import torch

torch.set_num_threads(int(os.environ.get("THREADS", "2")))  # THREADS=1: two explorations side by side
from cacovid_lib.embedded.world import WorldSpec, build_world, busy_world_spec
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.tokenizer import build_tokenizer
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm, save_model_folder, config_dict
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.video_llm_evaluation import evaluate_video_llm

name = sys.argv[1]
kw = dict(a.split("=") for a in sys.argv[2:])
grid, layers, hidden = int(kw.pop("grid", 6)), int(kw.pop("layers", 6)), int(kw.pop("hidden", 128))
heads, kv_heads = int(kw.pop("heads", 4)), int(kw.pop("kv_heads", 2))
train_videos = int(kw.pop("train_videos", 2400))
eval_every = int(kw.pop("eval_every", 0))
no_counting = kw.pop("no_counting", "0") == "1"  # only today's three question types, on the busy scenes
weights = kw.pop("weights", None)  # question_weights of the busy world's five types, e.g. 1,1,1,0.25,0.25
out = pathlib.Path("scratch/explore") / name
original = kw.pop("original", "0") == "1"  # the original world (4 x 4 grid, flat scenes), e.g. to test a deeper LLM
spec = WorldSpec() if original else busy_world_spec(grid)
if no_counting:
    from dataclasses import replace

    from cacovid_lib.embedded.world import QUESTION_TYPES
    spec = replace(spec, question_types=QUESTION_TYPES)  # binding questions ask only about unique attributes
unique = int(kw.pop("unique", 0))  # N > 0: N objects with unique colours and shapes, today's three question types
if unique:
    from dataclasses import replace

    from cacovid_lib.embedded.world import QUESTION_TYPES
    spec = replace(spec, attributes="unique", objects_per_video=unique, question_types=QUESTION_TYPES)
types = kw.pop("types", None)  # question types, comma-separated, e.g. colour_of_shape,shape_of_colour,which_object,appears_first
if types:
    from dataclasses import replace

    spec = replace(spec, question_types=tuple(types.split(",")))
if weights:
    from dataclasses import replace

    spec = replace(spec, question_weights=tuple(float(w) for w in weights.split(",")))
world = pathlib.Path(f"scratch/explore/world_{'original_' if original else ''}g{grid}_{train_videos}{'_nocount' if no_counting else ''}{f'_unique{unique}' if unique else ''}"
                     f"{'_w' + weights.replace(',', '_') if weights else ''}{'_t' + str(len(types.split(','))) if types else ''}")
t0 = time.time()
if not (world / "world_spec.json").exists():
    print(build_world(world, seed=0, num_videos={"train": train_videos, "val": 75, "test": 250}, spec=spec), flush=True)
print(f"world {time.time() - t0:.0f} s", flush=True)
train, val = load_split(world, "train", 8), load_split(world, "val", 8)
tok = build_tokenizer(spec)
mcfg = SmallVLMConfig(image_size=spec.frame_size, patch_size=spec.frame_size // (2 * spec.grid), text_layers=layers, text_hidden=hidden,
                      text_heads=heads, text_kv_heads=kv_heads)
def number_or_text(v: str):
    try:
        return float(v) if "." in v else int(v)
    except ValueError:
        return v


train_kw = {k: number_or_text(v) for k, v in kw.items()}  # the rest: VLMTrainConfig fields
tcfg = VLMTrainConfig(**train_kw)
print(mcfg, tcfg, flush=True)
model = build_small_vlm(tok, mcfg, seed=tcfg.seed)
vlm = LlavaOneVisionVideoLLM(model, tok, 8)
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {len(train)} questions, grid {vlm.grid}", flush=True)
stamps = []
def quick_eval():
    """Every eval_every steps: validation accuracy with all tokens on 120 questions (cheap progress signal)."""
    from cacovid_lib.compare.evaluation import predict
    from cacovid_lib.compare.keep import keep_all
    preds, _ = predict(vlm, val_small, keep_all)
    acc = float((preds == val_small.answers).mean())
    types = np.array([it["question_type"] for it in val_small.items])
    per_type = {t: round(float((preds == val_small.answers)[types == t].mean()), 2) for t in sorted(set(types))}
    print(f"step eval: val120 acc {acc:.3f} {per_type} at {time.time() - t1:.0f} s, cpu {time.process_time():.0f}", flush=True)
    return {"val120": acc}
val_small = load_split(world, "val", 8, limit=120)
t1 = time.time()
history = train_small_vlm(vlm, train, tcfg, eval_fn=quick_eval if eval_every else None, eval_every=eval_every)
train_s = time.time() - t1
print(f"trained {tcfg.steps} steps in {train_s:.0f} s wall, cpu {time.process_time():.0f} s", flush=True)
save_model_folder(model, tok, out / "model", {**config_dict(mcfg, tcfg), "num_frames": 8})
json.dump(history, open(out / "history.json", "w"))
t2 = time.time()
table = evaluate_video_llm(vlm, val, [0.25, 0.1], seed=0)
print(table.round(3).to_string(), flush=True)
print(f"eval {time.time() - t2:.0f} s", flush=True)
table.to_csv(out / "val_table.csv")
json.dump({"train_wall_s": train_s, "steps": tcfg.steps}, open(out / "timing.json", "w"))
