"""Validation check (not a pipeline stage): a full-length (1,500-step) policy at another learning rate against the
committed lr 1e-3 (seed 0), both on the validation split at 10% and 5% with the committed imp_ratio (1.0).
Needs the pipeline's outputs. Usage: .venv/bin/python scripts/check_policy_lr.py 0.0003 (writes under scratch/)."""
import sys
import time
from dataclasses import replace

from cacovid_lib.compare.cacovid import policy_keep_rule
from cacovid_lib.compare.evaluation import correct
from cacovid_lib.embedded.split import load_split
from cacovid_lib.method.policy import load_policy
from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.params import PolicyParams, parse, read_params
from cacovid_lib.pipeline.policy_training import train_policy_on_split
p = parse(PolicyParams, read_params("params.yaml")["policy"], "policy")
cfg = replace(parse(PolicyTrainConfig, p.train, "policy.train"), seed=0, lr=float(sys.argv[1]))
t0 = time.time()
train_policy_on_split("models/small_vlm", "data/world", 8, cfg, f"scratch/lrcheck/lr_{sys.argv[1]}", items_file="data/filtered/train.json", progress=False)
print("trained", round(time.time() - t0), "s", flush=True)
vlm = LlavaOneVisionVideoLLM.from_pretrained("models/small_vlm", num_frames=8)
val = load_split("data/world", "val", 8)
emb = encode_videos(vlm, val.frames)
for name, folder in (("lr 1e-3 (committed seed 0)", "models/policy/seed_0"), (f"lr {sys.argv[1]}", f"scratch/lrcheck/lr_{sys.argv[1]}")):
    pol = load_policy(folder, vlm.language_model).eval()
    for r in (0.1, 0.05):
        c = correct(vlm, val, policy_keep_rule(vlm, pol, val.items, r, 1.0), video_embeds=emb)
        print(name, r, round(float(c.mean()), 4), flush=True)
