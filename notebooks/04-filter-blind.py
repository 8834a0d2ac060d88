# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Blind filtering of the training set
# Drops the training questions the frozen video LLM answers correctly with no video at all (METHOD §4):
# they say nothing about which tokens matter. Writes the kept items in the Video-R1 JSON format.

# %% tags=["parameters"]
world = {"num_frames": 8}
world_dir = "data/world"
model_dir = "models/small_vlm"
filtered_file = "data/filtered/train.json"
metrics_dir = "reports/metrics"

# %%
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.embedded.split import load_split
from cacovid_lib.pipeline.blind_filter import blind_filter
from cacovid_lib.io_utils import write_json_atomic

vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=world["num_frames"])
train = load_split(world_dir, "train", world["num_frames"])
kept = blind_filter(vlm, train)
write_json_atomic(filtered_file, kept)
metrics = {"num_train": len(train), "num_kept": len(kept), "share_dropped": round(1 - len(kept) / len(train), 4)}
write_json_atomic(f"{metrics_dir}/blind_filter.json", metrics)
metrics
