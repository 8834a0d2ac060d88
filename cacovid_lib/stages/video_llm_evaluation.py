"""The small video LLM's evaluation (03-evaluate-video-llm): test accuracy with all, no and random video tokens, with
two oracle selections from the embedded world's ground truth, and the flat metrics of vlm.json."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cacovid_lib.compare.evaluation import accuracy_table, predict
from cacovid_lib.compare.keep import fixed_keep_rule, keep_all, keep_none, random_keep_rule
from cacovid_lib.data.schema import asked_token_mask

ORACLES = {"asked objects only": "asked_objects_only", "objects only": "objects_only"}  # column -> vlm.json key


def oracle_keeps(split) -> dict[str, np.ndarray]:
    """(num_items, N) bool masks from the generator's ground truth: the tokens of the objects each question asks
    about (what a perfect compressor keeps), and every object's tokens (no background, no clutter)."""
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N) object index or -1
    asked = np.stack([asked_token_mask(row, it) for row, it in zip(labels, split.items)])
    return {"asked objects only": asked, "objects only": labels >= 0}


def keep_rules(random_keep_ratios: list[float], seed: int, split=None) -> dict:
    """The evaluation's rows: all video tokens, none (blind), a random subset at each ratio, and, for a split with
    object labels (the embedded world), the two oracle selections of `oracle_keeps`."""
    rules = {"all tokens": keep_all, "no video (blind)": keep_none}
    rules.update({f"random {r:.0%}": random_keep_rule(r, seed) for r in random_keep_ratios})
    if split is not None and split.object_labels is not None:
        rules.update({name: fixed_keep_rule(keeps) for name, keeps in oracle_keeps(split).items()})
    return rules


def evaluate_video_llm(vlm, split, random_keep_ratios: list[float], seed: int) -> pd.DataFrame:
    """Accuracy per question type and overall (rows) under each keep rule of `keep_rules` (columns)."""
    rules = keep_rules(random_keep_ratios, seed, split)
    return pd.concat({name: accuracy_table(split, predict(vlm, split, rule, desc=name)[0])["accuracy"]
                      for name, rule in rules.items()}, axis=1)


def video_llm_metrics(table: pd.DataFrame, num_test: int, random_keep_ratios: list[float]) -> dict:
    """vlm.json: flat, one number per key (accuracy_full_<question type> per type), rounded to 4 digits."""
    def overall(column: str) -> float:
        return round(float(table.loc["overall", column]), 4)

    return {
        "accuracy_full": overall("all tokens"),
        "accuracy_blind": overall("no video (blind)"),
        "num_test": num_test,
        **{f"accuracy_random_{r}": overall(f"random {r:.0%}") for r in random_keep_ratios},
        **{f"accuracy_{key}": overall(name) for name, key in ORACLES.items() if name in table},
        **{f"accuracy_full_{k}": round(float(v), 4) for k, v in table["all tokens"].drop("overall").items()},
    }
