"""The comparison stages' figures (07, 09, 10), each drawn from the data a stage saves, one function each. The training
stages' figures live with their training code (video_llm_training, policy_training), so that editing a comparison
figure does not retrain anything."""
from __future__ import annotations


import pandas as pd

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
