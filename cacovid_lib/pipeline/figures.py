"""The pipeline's figures, each drawn from the data a stage saves (a history or a metrics table), one function each."""
from __future__ import annotations

import math

import pandas as pd

# panels of the policy training figure: (title, y label, history columns); a panel whose columns are all absent
# (a history from before the health columns) is left out
POLICY_TRAINING_PANELS = [
    ("reward per mode", "answer accuracy", ["reward_token", "reward_frame", "reward_content"]),
    ("policy loss", "loss", ["loss"]),
    ("groups with zero reward spread", "fraction of items", ["zero_spread_all", "zero_spread_token", "zero_spread_frame"]),
    ("token ratios clipped", "fraction of decisions", ["clip_low", "clip_high"]),
    ("policy entropy (log 2 = undecided)", "nats per decision", ["entropy_token", "entropy_frame"]),
    ("KL to the iteration-0 policy", "nats per decision", ["kl_token", "kl_frame"]),
    ("gradient norm before clipping", "norm", ["grad_norm"]),
    ("kept tokens per rollout", "tokens", ["kept_tokens"]),
    ("sample rate and learning rate", "sample rate r", ["sample_rate"]),
]


def policy_training_figure(history: pd.DataFrame, window: int = 25):
    """The policy loop's history (train_loop.TrainerState.history as a frame, one row per step) as a grid of panels:
    rewards per mode, loss, and the training health (method/health.py). Curves are `window`-step rolling means.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    smooth = history.set_index("step").rolling(window, min_periods=1).mean()
    panels = [p for p in POLICY_TRAINING_PANELS if any(c in smooth for c in p[2])]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (title, ylabel, columns) in zip(axes.flat, panels):
        present = [c for c in columns if c in smooth]
        smooth[present].plot(ax=ax, legend=len(present) > 1)
        ax.set_title(f"{title} ({window}-step mean)", fontsize=9)
        ax.set_ylabel(ylabel)
        if title.startswith("policy entropy"):
            ax.axhline(math.log(2), color="grey", lw=0.8, ls=":")
        if "lr" in smooth and title.startswith("sample rate"):  # the learning rate on its own axis
            twin = ax.twinx()
            smooth["lr"].plot(ax=twin, color="grey", ls=":")
            twin.set_ylabel("learning rate")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def vlm_training_figure(history: pd.DataFrame, curriculum_steps: int, vision_steps: int | None, window: int = 20):
    """The small video LLM's losses (embedded.small_vlm.train_small_vlm's history, one row per step) as `window`-step
    rolling means on a log scale, with the end of the token curriculum and the step the vision tower froze marked.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    smooth = history.set_index("step")[["answer_loss", "aux_loss"]].rolling(window, min_periods=1).mean()
    ax = smooth.plot(figsize=(6, 3.2), logy=True, title=f"small video LLM training ({window}-step mean)")
    ax.set_ylabel("loss")
    ax.axvline(curriculum_steps, color="grey", ls=":", lw=1, label="curriculum ends")
    if vision_steps is not None:
        ax.axvline(vision_steps, color="black", ls="--", lw=1, label="vision tower frozen")
    ax.legend(fontsize=8)
    plt.tight_layout()
    return ax.figure


def retention_figure(curves: pd.DataFrame, upper: float, title: str, highlight: str | None = None,
                     bands: dict[str, tuple[pd.Series, pd.Series]] | None = None, figsize=(6.5, 4)):
    """Accuracy against retention ratio: one line per column of `curves` (index: retention), the all-token accuracy
    `upper` as a dotted line, `highlight` drawn thicker, and optional shaded intervals {column: (low, high)}.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for name in curves.columns:
        line, = ax.plot(curves.index, curves[name], marker="o", lw=2.5 if name == highlight else 1.2, label=name)
        if bands and name in bands:
            ax.fill_between(curves.index, *bands[name], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(upper, color="grey", ls=":", label="all tokens")
    ax.set_xlabel("retention ratio")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2 if len(curves.columns) > 4 else 1)
    plt.tight_layout()
    return fig


def audit_heatmaps_figure(frames, maps: dict, rows: list[str], grid: tuple[int, int, int], title: str):
    """One audited item frame by frame: the video frames (t, H, W, 3) on top, then one row per score map in `rows`
    (each map (N,) over the t*h*w video tokens, coloured within its own range). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    t, h, w = grid
    fig, axes = plt.subplots(len(rows) + 1, t, figsize=(1.3 * t, 1.4 * (len(rows) + 1)), squeeze=False)
    for j in range(t):
        axes[0, j].imshow(frames[j])
        axes[0, j].set_title(f"frame {j}", fontsize=7)
        for r, name in enumerate(rows, start=1):
            values = maps[name].view(t, h, w)
            axes[r, j].imshow(values[j], cmap="magma", vmin=float(values.min()), vmax=float(values.max()))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, name in enumerate(["video", *rows]):
        axes[r, 0].set_ylabel(name.replace("_", "\n"), fontsize=7)
    fig.suptitle(title, fontsize=8)
    plt.tight_layout()
    return fig
