"""Stage 01's figure: sample test videos as the video LLM sees them, one question of each type, with the video
tokens that show the asked-about objects outlined (so a reader sees how small a share of the video a question
needs). Kept apart from the comparison figures so that editing those never rebuilds the world."""
from __future__ import annotations

import numpy as np

from cacovid_lib.data.schema import asked_token_mask


def sample_rows(items: list[dict], max_rows: int = 5) -> list[int]:
    """Indices of the first item of each question type (in the split's order), at most `max_rows`."""
    first = {}
    for i, item in enumerate(items):
        first.setdefault(item.get("question_type", "all"), i)
    return sorted(first.values())[:max_rows]


def world_samples_figure(split, max_rows: int = 5):
    """One row per sampled item: its video's frames (t, H, W, 3), the cells of its asked objects outlined in white,
    the question, options and answer above the row. `split` needs object labels (the embedded world)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = sample_rows(split.items, max_rows)
    t, size = split.frames.shape[1], split.frames.shape[2]
    side = int(round(np.sqrt(split.object_labels.shape[-1])))  # grid cells (video tokens) per side
    cell = size / side
    fig, axes = plt.subplots(len(rows), t, figsize=(1.4 * t, 1.75 * len(rows)), squeeze=False)
    for row, i in enumerate(rows):
        item, video = split.items[i], split.video_of_item[i]
        asked = asked_token_mask(split.object_labels[video], item)  # (t, h*w)
        for j, ax in enumerate(axes[row]):
            ax.imshow(split.frames[video, j])
            for c in np.flatnonzero(asked[j]):
                y, x = divmod(int(c), side)
                ax.add_patch(Rectangle((x * cell - 0.5, y * cell - 0.5), cell, cell, fill=False, ec="white", lw=1.2))
            ax.set_xticks([]), ax.set_yticks([])
        axes[row, 0].set_ylabel(item.get("question_type", item["problem_id"]), fontsize=7)
        fig.text(0.01, 0.995 - row / len(rows), f"{item['problem']}   {' | '.join(item['options'])}   -> {item['solution']}",
                 fontsize=8, va="top")
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.01, top=0.95, hspace=0.45, wspace=0.05)
    return fig
