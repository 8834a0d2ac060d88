"""A split of a Video-R1 style video-QA set, with its videos decoded once (decord) and kept in memory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cacovid_lib.data.schema import answer_letter, load_items
from cacovid_lib.data.video_io import read_video
from cacovid_lib.embedded.world import WorldSpec, read_world_spec, token_labels
from cacovid_lib.io_utils import KitInputError, read_json


@dataclass
class VideoQASplit:
    items: list[dict]
    frames: np.ndarray  # (num_videos, t, H, W, 3) uint8
    video_of_item: np.ndarray  # (num_items,) index into frames
    answers: np.ndarray  # (num_items,) index of the correct option
    object_labels: np.ndarray | None  # (num_videos, t, h*w) object index per video token, -1 = none (embedded world only)
    layouts: list[dict] | None  # per video, the generator's layout (embedded world only)
    clutter_labels: np.ndarray | None = None  # (num_videos, t, h*w) clutter index per video token, -1 = none (ditto)

    def __len__(self):
        return len(self.items)


def check_world_fits(spec: WorldSpec, num_frames: int, video_llm, where="world") -> None:
    """The world's frames and grid must be the video LLM's: frame_size == its image_size (where it has one) and
    its video tokens per frame the world's grid cells, since the per-token labels come from the layout. One
    KitInputError line naming both otherwise."""
    t, h, w = video_llm.grid
    size = getattr(video_llm, "image_size", spec.frame_size)
    if (size, t, h, w) != (spec.frame_size, num_frames, spec.grid, spec.grid):
        raise KitInputError(f"{where}: {spec.frame_size}-pixel frames of {spec.grid}x{spec.grid} cells, {num_frames} "
                            f"frames; the video LLM takes {size}-pixel frames and makes {t} x {h}x{w} video tokens")


def load_split(root, split: str, num_frames: int, limit: int | None = None, items_file=None,
               video_llm=None) -> VideoQASplit:
    """Read `<root>/<split>.json` (or `items_file`, e.g. a blind-filtered copy, whose paths are relative to
    `root`), decode each distinct video once, attach per-token labels if a layout exists. With `video_llm` (a
    models.base.VideoLLM), an embedded world is first checked to fit it (check_world_fits)."""
    root = Path(root)
    if video_llm is not None and (root / "world_spec.json").is_file():
        check_world_fits(read_world_spec(root), num_frames, video_llm, root / "world_spec.json")
    items = load_items(Path(items_file) if items_file else root / f"{split}.json")[:limit]
    paths = list(dict.fromkeys(item["path"] for item in items))
    index = {p: i for i, p in enumerate(paths)}
    frames = np.stack([read_video(root / p, num_frames) for p in tqdm(paths, desc=f"decode {split}", mininterval=2)])
    answers = np.array(["ABCD".index(answer_letter(it)) for it in items])
    layouts = labels = clutter = None
    layout_file = root / f"{split}_layout.json"
    if layout_file.is_file():
        all_layouts = read_json(layout_file)
        spec = read_world_spec(root)
        missing = [p for p in paths if p not in all_layouts]
        if missing:
            raise KitInputError(f"{layout_file}: no layout for {missing[0]}")
        layouts = [all_layouts[p] for p in paths]
        labels = np.stack([token_labels(lay, num_frames, spec) for lay in layouts])
        clutter = np.stack([token_labels(lay, num_frames, spec, kind="clutter") for lay in layouts])
    return VideoQASplit(items, frames, np.array([index[it["path"]] for it in items]), answers, labels, layouts, clutter)
