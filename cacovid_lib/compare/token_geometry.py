"""How the video LLM's projected video tokens are spread: the mean cosine between two tokens of different
objects, between an object token and a non-object token (background or clutter), and between two non-object tokens.
Diversity rules (DivPrune's max-min cosine, the density-peak picks) rank tokens by exactly this geometry: where the
non-object tokens sit in one narrow cone and the objects apart from it, diversity alone finds the objects. A
pretrained encoder (SigLIP) keeps background regions and textures apart, so on real video they compete for the budget.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

PAIR_KINDS = ("object_pair", "object_vs_non_object", "non_object_pair")  # the three kinds of token pairs
NEAREST_KINDS = ("object_nearest_non_object", "non_object_nearest_non_object")  # nearest_cosines' two kinds


def pair_cosines(tokens: torch.Tensor, labels: np.ndarray, cells_per_frame: int | None = None) -> dict[str, torch.Tensor]:
    """Cosines of every pair of distinct tokens of one video, by kind: tokens (N, D), labels (N,) object index or -1.
    "object_pair": tokens of two different objects; "object_vs_non_object": an object token and a background or
    clutter token; "non_object_pair": two different background or clutter tokens (a token with itself is no pair).
    With `cells_per_frame` (tokens frame by frame, h*w each), also "non_object_pair_other_cell": the non-object pairs
    at two different grid cells, i.e. without a cell paired with itself in another frame (static background repeats
    across frames, and any encoder gives it the same token there)."""
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1)
    cos = unit @ unit.T  # (N, N)
    lab = torch.as_tensor(labels, device=cos.device)
    obj = lab >= 0  # (N,)
    upper = torch.ones_like(cos, dtype=torch.bool).triu(1)  # each unordered pair once, no self-pairs
    kinds = {"object_pair": obj[:, None] & obj[None, :] & (lab[:, None] != lab[None, :]),
             "object_vs_non_object": obj[:, None] ^ obj[None, :],
             "non_object_pair": ~obj[:, None] & ~obj[None, :]}
    if cells_per_frame:
        cell = torch.arange(len(lab), device=lab.device) % cells_per_frame  # (N,) grid cell of each token
        kinds["non_object_pair_other_cell"] = kinds["non_object_pair"] & (cell[:, None] != cell[None, :])
    return {kind: cos[upper & mask] for kind, mask in kinds.items()}


def nearest_cosines(tokens: torch.Tensor, labels: np.ndarray, cells_per_frame: int | None = None) -> dict[str, torch.Tensor]:
    """Each token's cosine with its nearest non-object token of the same video: tokens (N, D), labels (N,) object
    index or -1. "object_nearest_non_object": one value per object token; "non_object_nearest_non_object": one per
    non-object token, its nearest other non-object token (with `cells_per_frame`, at another grid cell: a static
    background cell repeats across frames). A mean pair cosine says how wide the cone is; these say how far the
    objects stand out of it, which is what a greedy max-min rule (DivPrune) reads: a token far from every other kind
    is picked early."""
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1)
    cos = unit @ unit.T  # (N, N)
    lab = torch.as_tensor(labels, device=cos.device)
    obj = lab >= 0  # (N,)
    to_non_object = cos.masked_fill(obj[None, :], float("-inf"))  # (N, N) only non-object columns
    other = torch.ones_like(cos, dtype=torch.bool).fill_diagonal_(False)  # (N, N) a token is not its own neighbour
    if cells_per_frame:
        cell = torch.arange(len(lab), device=lab.device) % cells_per_frame  # (N,) grid cell of each token
        other &= (cell[:, None] != cell[None, :]) | obj[:, None]  # an object token may neighbour its cell's background
    nearest = to_non_object.masked_fill(~other, float("-inf")).amax(dim=1)  # (N,)
    found = torch.isfinite(nearest)
    return {"object_nearest_non_object": nearest[obj & found], "non_object_nearest_non_object": nearest[~obj & found]}


def token_geometry(tokens: torch.Tensor, labels: np.ndarray, cells_per_frame: int | None = None) -> dict[str, float]:
    """Flat metrics over videos: tokens (V, N, D) video tokens, labels (V, N) object index or -1 (cells_per_frame: as
    in pair_cosines and nearest_cosines). Each cosine is the mean over videos of the video's mean over its pairs (or
    tokens, for the nearest-neighbour kinds) of that kind (a video without any is skipped); the norms are the mean
    token norms of object and non-object tokens."""
    kinds = PAIR_KINDS + (("non_object_pair_other_cell",) if cells_per_frame else ()) + NEAREST_KINDS
    per_kind: dict[str, list[float]] = {kind: [] for kind in kinds}
    norms = {"object": [], "non_object": []}
    for video, lab in zip(tokens, labels):
        cosines = pair_cosines(video, lab, cells_per_frame) | nearest_cosines(video, lab, cells_per_frame)
        for kind, values in cosines.items():
            if len(values):
                per_kind[kind].append(float(values.mean()))
        norm = video.float().norm(dim=-1)  # (N,)
        obj = torch.as_tensor(lab, device=norm.device) >= 0
        if obj.any():
            norms["object"].append(float(norm[obj].mean()))
        if (~obj).any():
            norms["non_object"].append(float(norm[~obj].mean()))
    out = {f"{kind}_cosine": float(np.mean(v)) if v else float("nan") for kind, v in per_kind.items()}
    out |= {f"{kind}_token_norm": float(np.mean(v)) if v else float("nan") for kind, v in norms.items()}
    return out | {"num_videos": int(len(tokens))}


def cosine_samples(tokens: torch.Tensor, labels: np.ndarray, per_video: int = 200, seed: int = 0) -> pd.DataFrame:
    """Up to `per_video` pair cosines of each kind from every video, drawn at random, for a histogram:
    columns kind, cosine."""
    rng = np.random.default_rng(seed)
    rows = []
    for video, lab in zip(tokens, labels):
        for kind, values in pair_cosines(video, lab).items():
            values = values.cpu().numpy()
            pick = rng.choice(len(values), size=min(per_video, len(values)), replace=False) if len(values) else []
            rows.append(pd.DataFrame({"kind": kind, "cosine": values[pick]}))
    return pd.concat(rows, ignore_index=True)


def geometry_figure(samples: pd.DataFrame, metrics: dict):
    """Histogram of the pair cosines of each kind, with each kind's mean in its legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bins = np.linspace(-1, 1, 41)
    for kind in PAIR_KINDS:
        values = samples.loc[samples["kind"] == kind, "cosine"]
        ax.hist(values, bins=bins, density=True, alpha=0.5,
                label=f"{kind.replace('_', ' ')} (mean {metrics[f'{kind}_cosine']:.2f})")
    ax.set(xlabel="cosine between two video tokens of one video", ylabel="density",
           title=f"Video-token geometry, {metrics['num_videos']} test videos")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
