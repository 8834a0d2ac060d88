"""The small video LLM's evaluation (03-evaluate-video-llm): test accuracy with all, no and random video tokens, and
the flat metrics of vlm.json."""
from __future__ import annotations

import pandas as pd

from cacovid_lib.compare.evaluation import accuracy_table, predict
from cacovid_lib.compare.keep import keep_all, keep_none, random_keep_rule


def keep_rules(random_keep_ratios: list[float], seed: int) -> dict:
    """The evaluation's rows: all video tokens, none (blind), and a random subset at each ratio."""
    rules = {"all tokens": keep_all, "no video (blind)": keep_none}
    rules.update({f"random {r:.0%}": random_keep_rule(r, seed) for r in random_keep_ratios})
    return rules


def evaluate_video_llm(vlm, split, random_keep_ratios: list[float], seed: int) -> pd.DataFrame:
    """Accuracy per question type and overall (rows) under each keep rule of `keep_rules` (columns)."""
    rules = keep_rules(random_keep_ratios, seed)
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
        **{f"accuracy_full_{k}": round(float(v), 4) for k, v in table["all tokens"].drop("overall").items()},
    }
