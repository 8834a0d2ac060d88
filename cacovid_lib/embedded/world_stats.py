"""Statistics of an embedded world from the generator's ground truth (layouts, questions), for world_stats.json:
how small a share of the video tokens a question needs, how many things a video holds against a 5% token budget,
how briefly asked objects are seen, and how much adjacent sampled frames repeat each other."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cacovid_lib.data.schema import asked_objects, asked_token_mask, load_items
from cacovid_lib.data.video_io import read_video, uniform_frame_indices
from cacovid_lib.embedded.world import WorldSpec, frame_cells, read_world_spec, token_labels
from cacovid_lib.io_utils import read_json


def question_token_shares(items: list[dict], layouts: dict, num_frames: int, spec: WorldSpec) -> np.ndarray:
    """(num_items,) share of a question's video tokens (num_frames x grid x grid) that show an asked-about object."""
    shares = []
    for item in items:
        labels = token_labels(layouts[item["path"]], num_frames, spec)  # (t, h*w) object index or -1
        shares.append(asked_token_mask(labels, item).mean())
    return np.array(shares)


def visible_frames(cells: list[int], num_frames: int, spec: WorldSpec) -> int:
    """In how many of the sampled frames an object is on screen."""
    return int(sum(cells[f] >= 0 for f in uniform_frame_indices(spec.num_rendered_frames, num_frames)))


def adjacent_cell_similarity(frames: np.ndarray, grid: int, tolerance: float = 8.0) -> tuple[float, float]:
    """Per pixel cell (= video token) and pair of adjacent sampled frames: (share of cells whose mean absolute pixel
    difference is under `tolerance`, i.e. that repeat; mean cosine similarity of the cells' mean-centred pixels).
    frames (t, H, W, 3) uint8."""
    t = len(frames)
    x = frame_cells(frames, grid).astype(float).reshape(t, grid * grid, -1)  # (t, cells, pixels)
    same = np.abs(x[1:] - x[:-1]).mean(-1) < tolerance  # (t-1, cells)
    c = x - x.mean(-1, keepdims=True)  # (t, cells, pixels) centred per cell: flat cells carry no direction
    norm = np.linalg.norm(c, axis=-1) + 1e-6
    cos = (c[1:] * c[:-1]).sum(-1) / (norm[1:] * norm[:-1])  # (t-1, cells)
    return float(same.mean()), float(cos.mean())


def world_stats(world_dir, split: str, num_frames: int, pixel_videos: int = 50) -> dict:
    """A flat dict of the world's statistics on `split` (ground truth; the pixel similarity decodes the first
    `pixel_videos` videos). num_frames: frames the video LLM samples."""
    root = Path(world_dir)
    spec = read_world_spec(root)
    items = load_items(root / f"{split}.json")
    layouts = read_json(root / f"{split}_layout.json")
    tokens = num_frames * spec.grid * spec.grid
    shares = question_token_shares(items, layouts, num_frames, spec)
    object_asks = [(it, k) for it in items for k in asked_objects(it)]
    seen = np.array([visible_frames(layouts[it["path"]]["objects"][k]["cells"], num_frames, spec) for it, k in object_asks])
    every_seen = np.array([visible_frames(o["cells"], num_frames, spec) for lay in layouts.values() for o in lay["objects"]])
    things = np.array([len(lay["objects"]) + len(lay["clutter"]) + lay["background_regions"] for lay in layouts.values()])
    on_screen = np.array([np.mean([sum(o["cells"][f] >= 0 for o in lay["objects"] + lay["clutter"])
                                   for f in uniform_frame_indices(spec.num_rendered_frames, num_frames)])
                          for lay in layouts.values()])  # things on screen per sampled frame
    pixel = [adjacent_cell_similarity(read_video(root / p, num_frames), spec.grid) for p in list(layouts)[:pixel_videos]]
    budget = 0.05 * tokens
    return {
        "split": split,
        "videos": len(layouts),
        "questions": len(items),
        "tokens_per_frame": spec.grid * spec.grid,
        "frames": num_frames,
        "video_tokens": tokens,
        "token_budget_at_5pct": budget,
        "question_token_share_median": float(np.median(shares)),
        "question_token_share_mean": float(shares.mean()),
        "question_token_share_p90": float(np.quantile(shares, 0.9)),
        "objects_per_video": float(np.mean([len(lay["objects"]) for lay in layouts.values()])),
        "clutter_per_video": float(np.mean([len(lay["clutter"]) for lay in layouts.values()])),
        "asked_objects_per_video": float(len({(it["path"], k) for it, k in object_asks}) / len(layouts)),
        "distinct_things_per_video": float(things.mean()),
        "distinct_things_per_5pct_budget": float(things.mean() / budget),
        "things_on_screen_per_frame_share": float(on_screen.mean() / (spec.grid * spec.grid)),
        "asked_object_frame_share_mean": float(seen.mean() / num_frames),
        "asked_object_frame_share_median": float(np.median(seen) / num_frames),
        "asked_objects_in_at_most_2_frames": float((seen <= 2).mean()),
        "asked_objects_never_sampled": float((seen == 0).mean()),
        "objects_in_at_least_half_the_frames": float((every_seen >= num_frames / 2).mean()),
        "adjacent_frame_cell_repeat_share": float(np.mean([p[0] for p in pixel])),  # pixels per cell, see docstring
        "adjacent_frame_cell_cosine": float(np.mean([p[1] for p in pixel])),
        **{f"questions_{t}": int(sum(it.get("question_type") == t for it in items))
           for t in sorted({it.get("question_type", "all") for it in items})},
    }
