"""A split of a Video-R1 style video-QA set, with its videos decoded once (decord) and kept in memory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cacovid_lib.data.schema import answer_letter, load_items
from cacovid_lib.data.video_io import read_video
from cacovid_lib.embedded.world import WorldSpec, token_labels
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


def load_split(root, split: str, num_frames: int, limit: int | None = None, items_file=None) -> VideoQASplit:
    """Read `<root>/<split>.json` (or `items_file`, e.g. a blind-filtered copy, whose paths are relative to
    `root`), decode each distinct video once, attach per-token labels if a layout exists."""
    root = Path(root)
    items = load_items(Path(items_file) if items_file else root / f"{split}.json")[:limit]
    paths = list(dict.fromkeys(item["path"] for item in items))
    index = {p: i for i, p in enumerate(paths)}
    frames = np.stack([read_video(root / p, num_frames) for p in tqdm(paths, desc=f"decode {split}", mininterval=2)])
    answers = np.array(["ABCD".index(answer_letter(it)) for it in items])
    layouts = labels = clutter = None
    layout_file = root / f"{split}_layout.json"
    if layout_file.is_file():
        all_layouts = read_json(layout_file)
        spec = WorldSpec(**read_json(root / "world_spec.json"))
        missing = [p for p in paths if p not in all_layouts]
        if missing:
            raise KitInputError(f"{layout_file}: no layout for {missing[0]}")
        layouts = [all_layouts[p] for p in paths]
        labels = np.stack([token_labels(lay, num_frames, spec) for lay in layouts])
        clutter = np.stack([token_labels(lay, num_frames, spec, kind="clutter") for lay in layouts])
    return VideoQASplit(items, frames, np.array([index[it["path"]] for it in items]), answers, labels, layouts, clutter)
