"""The small video LLM's cross-seed spread (13-vlm-seed-spread, an extra stage of extras/dvc.yaml, outside the
default `dvc repro`): the default recipe trained again at other seeds, each in its own process on one CPU core, and
scored on the test split as 03-evaluate-video-llm scores the pipeline's model."""
from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig

SPREAD_KEYS = ("accuracy_full", "accuracy_blind", "accuracy_random_0.1", "accuracy_asked_objects_only")
"""vlm.json keys whose mean and standard deviation over the seeds vlm_seed_spread.json reports"""


def train_and_score_seed(world_dir, num_frames: int, model_cfg: SmallVLMConfig, train_cfg: VLMTrainConfig,
                         random_keep_ratios: list[float], eval_seed: int, model_dir) -> dict:
    """Train one small video LLM (the recipe `train_cfg`, its seed included) into `model_dir`, load it back with
    `from_pretrained` and score it on the test split: {"seed": s, **vlm.json's keys}. Runs in a worker process."""
    import torch

    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
    from cacovid_lib.stages.video_llm_evaluation import evaluate_video_llm, video_llm_metrics
    from cacovid_lib.stages.video_llm_training import train_video_llm

    torch.set_num_threads(train_cfg.threads or 1)  # one core per worker; the recipe's own thread count trains
    train_video_llm(world_dir, num_frames, model_cfg, train_cfg, model_dir)
    vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=num_frames)
    test = load_split(world_dir, "test", num_frames)
    table = evaluate_video_llm(vlm, test, random_keep_ratios, eval_seed)
    return {"seed": train_cfg.seed, **video_llm_metrics(table, len(test), random_keep_ratios)}


def train_seeds(world_dir, num_frames: int, model_cfg: SmallVLMConfig, train_cfg: VLMTrainConfig, seeds: list[int],
                random_keep_ratios: list[float], eval_seed: int, models_dir, workers: int) -> pd.DataFrame:
    """`train_and_score_seed` for each of `seeds` (train_cfg with its seed replaced), `workers` at a time in
    separate processes (spawned: a fresh torch in each); the model of seed s goes to models_dir/seed_<s>. One row per
    seed, in the order of `seeds`."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(seeds)), mp_context=context) as pool:
        futures = [pool.submit(train_and_score_seed, str(world_dir), num_frames, model_cfg,
                               dataclasses.replace(train_cfg, seed=s), random_keep_ratios, eval_seed,
                               str(Path(models_dir) / f"seed_{s}")) for s in seeds]
        return pd.DataFrame([f.result() for f in futures])


def spread_metrics(table: pd.DataFrame) -> dict:
    """vlm_seed_spread.json (flat): the seeds, and per SPREAD_KEYS key its mean, sample standard deviation, minimum
    and maximum over the rows of `table` (one per seed), rounded to 4 digits."""
    out = {"num_seeds": len(table), "seeds": " ".join(str(int(s)) for s in table["seed"])}
    for key in SPREAD_KEYS:
        if key in table:
            column = table[key].astype(float)
            out.update({f"{key}_mean": round(column.mean(), 4), f"{key}_sd": round(column.std(ddof=1), 4) if len(column) > 1 else 0.0,
                        f"{key}_min": round(column.min(), 4), f"{key}_max": round(column.max(), 4)})
    return out


def seed_spread_figure(table: pd.DataFrame):
    """Test accuracy of each seed's video LLM (dots) with all tokens, random 10% of them, the asked objects' tokens
    only and none (blind). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    rows = {"all tokens": "accuracy_full", "asked objects only": "accuracy_asked_objects_only",
            "random 10%": "accuracy_random_0.1", "blind": "accuracy_blind"}
    rows = {name: key for name, key in rows.items() if key in table}
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.45 * len(rows)))
    for y, (name, key) in enumerate(rows.items()):
        for seed, value in zip(table["seed"], table[key]):
            ax.scatter(value, y, color=f"C{int(seed) % 10}", label=f"seed {int(seed)}" if y == 0 else None, zorder=3)
    ax.set_yticks(range(len(rows)), list(rows))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy")
    ax.set_title("small video LLM: one training per seed")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    plt.tight_layout()
    return fig
