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


def accuracy_flops_figure(table: pd.DataFrame, highlight: str | None = "CaCoVID", upper: str = "All tokens",
                          figsize=(12, 4.2)):
    """Accuracy against prefill compute, from compare.benchmark.accuracy_flops_table: two panels, x = share of the
    all-token prefill FLOPs at the embedded LLM's shape (left) and at LLaVA-OneVision-7B's (right); y = the embedded
    test accuracy in both (the same selections, costed at two shapes). One line per method over its retention ratios,
    `highlight` drawn thicker, the all-token accuracy (`upper`'s row) as a dotted line. Returns the matplotlib
    Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True)
    panels = [("embedded_share", "embedded LLM (6 layers)"),
              ("llava_ov_7b_share", "LLaVA-OneVision-7B shape (28 layers)")]
    methods = [m for m in dict.fromkeys(table["method"]) if m != upper]
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: the default cycle repeats after 10 methods
    for ax, (column, title) in zip(axes, panels):
        for i, name in enumerate(methods):
            rows = table[table["method"] == name].sort_values(column)
            ax.plot(rows[column], rows["average"], marker="o", lw=2.8 if name == highlight else 1.2,
                    color="black" if name == highlight else colours[i % len(colours)],
                    zorder=3 if name == highlight else 2, label=name)
        full = table.loc[table["method"] == upper, "average"]
        if len(full):
            ax.axhline(float(full.iloc[0]), color="grey", ls=":", label="all tokens")
        ax.set_xlabel("prefill FLOPs, share of the all-token prefill")
        ax.set_title(title)
    axes[0].set_ylabel("test accuracy (embedded)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    plt.tight_layout()
    return fig
