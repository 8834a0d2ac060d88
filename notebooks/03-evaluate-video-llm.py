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
# # 03 · Evaluate the small video LLM
# Loads the trained model back with `from_pretrained` (the path a real checkpoint takes) and scores
# the test split with all video tokens, with none (blind), and with random token dropout.

# %% tags=["parameters"]
world = {"num_frames": 8}
evaluate = {"random_keep_ratios": [0.5, 0.25, 0.1], "seed": 0}
world_dir = "data/world"
model_dir = "models/small_vlm"
metrics_dir = "reports/metrics"
tables_dir = "reports/tables"

# %%
import pandas as pd

from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.embedded.split import load_split
from cacovid_lib.compare.evaluation import accuracy_table, predict
from cacovid_lib.compare.keep import keep_all, keep_none, random_keep_rule
from cacovid_lib.io_utils import write_json_atomic, write_text_atomic

vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=world["num_frames"])
test = load_split(world_dir, "test", world["num_frames"])
rules = {"all tokens": keep_all, "no video (blind)": keep_none}
rules.update({f"random {r:.0%}": random_keep_rule(r, evaluate["seed"]) for r in evaluate["random_keep_ratios"]})
table = pd.concat({name: accuracy_table(test, predict(vlm, test, rule, desc=name)[0])["accuracy"] for name, rule in rules.items()}, axis=1)
table.round(3)

# %%
metrics = {
    "accuracy_full": round(float(table.loc["overall", "all tokens"]), 4),
    "accuracy_blind": round(float(table.loc["overall", "no video (blind)"]), 4),
    "num_test": len(test),
    **{f"accuracy_random_{r}": round(float(table.loc["overall", f"random {r:.0%}"]), 4) for r in evaluate["random_keep_ratios"]},
    "accuracy_full_by_type": {k: round(float(v), 4) for k, v in table["all tokens"].drop("overall").items()},
}
write_json_atomic(f"{metrics_dir}/vlm.json", metrics)
write_text_atomic(f"{tables_dir}/vlm.md", table.round(3).to_markdown() + "\n")
metrics
