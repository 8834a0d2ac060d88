"""The embedded video-QA world: renders MP4 videos of coloured shapes and writes Video-R1 style questions.

Each video holds a few coloured objects that appear for part of the video and move between cells
of a coarse grid, plus colourless high-contrast clutter (salient but irrelevant). Every question is
about one object, so it needs only the few video tokens where that object is; a question without
the video is at chance (options are balanced and shuffled).

The grid cells are exactly the small video LLM's pooled video tokens (64x64 frames, 8x8 patches,
2x2 pooling -> 4x4 tokens of 16x16 pixels), so the generator's layout gives per-token labels.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cacovid_lib.data.schema import LETTERS
from cacovid_lib.data.video_io import uniform_frame_indices, write_video
from cacovid_lib.io_utils import write_json_atomic

COLOURS = {
    "red": (235, 45, 45),
    "green": (40, 200, 70),
    "blue": (55, 95, 245),
    "yellow": (240, 220, 40),
    "purple": (175, 70, 230),
    "cyan": (40, 220, 225),
}
SHAPES = ("circle", "square", "triangle", "cross", "ring")
QUESTION_TYPES = ("colour_of_shape", "shape_of_colour", "which_object")


@dataclass
class WorldSpec:
    """Geometry of the rendered videos (fixed by the small video LLM's token grid)."""

    frame_size: int = 64  # pixels, square frames
    grid: int = 4  # cells per side == pooled video tokens per side
    num_rendered_frames: int = 16  # frames in each MP4
    objects_per_video: int = 4  # every distractor colour/shape of a question is then another object of the video
    clutter_per_video: int = 2
    min_visible: int = 5  # an object is on screen for a window of 5..10 rendered frames
    max_visible: int = 10

    @property
    def cell(self) -> int:
        return self.frame_size // self.grid


def _shape_masks(cell: int) -> dict[str, np.ndarray]:
    """Boolean (cell, cell) masks of each shape, about 3/4 of a cell wide, centred."""
    yy, xx = np.mgrid[0:cell, 0:cell] + 0.5
    c = cell / 2
    r = cell * 0.38
    dy, dx = yy - c, xx - c
    dist = np.sqrt(dx**2 + dy**2)
    arm = cell * 0.12
    return {
        "circle": dist <= r,
        "square": (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85),
        "triangle": (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6),
        "cross": ((np.abs(dx) <= arm) | (np.abs(dy) <= arm)) & (np.abs(dx) <= r) & (np.abs(dy) <= r),
        "ring": (dist <= r) & (dist >= r * 0.55),
    }


def _walk(rng, num_frames, start, length, occupied, num_cells, grid):
    """Cells (or -1) per rendered frame for one object: a random walk on free cells within its window."""
    cells = np.full(num_frames, -1)
    cell = None
    for f in range(start, start + length):
        options = [c for c in range(num_cells) if not occupied[f, c]]
        if cell is not None and rng.random() < 0.7:  # usually stay or step to a neighbour
            y, x = divmod(cell, grid)
            near = [c for c in options if abs(c // grid - y) + abs(c % grid - x) <= 1]
            options = near or options
        if cell is None or cell not in options or rng.random() < 0.35:
            cell = int(rng.choice(options))
        cells[f] = cell
        occupied[f, cell] = True
    return cells


def render_video(rng: np.random.Generator, spec: WorldSpec):
    """Render one video. Returns uint8 frames (T, H, W, 3) and the layout of its objects and clutter."""
    num_cells = spec.grid * spec.grid
    colours = rng.choice(list(COLOURS), spec.objects_per_video, replace=False)
    shapes = rng.choice(SHAPES, spec.objects_per_video, replace=False)
    occupied = np.zeros((spec.num_rendered_frames, num_cells), bool)
    objects = []
    for colour, shape in zip(colours, shapes):
        length = int(rng.integers(spec.min_visible, spec.max_visible + 1))
        start = int(rng.integers(0, spec.num_rendered_frames - length + 1))
        cells = _walk(rng, spec.num_rendered_frames, start, length, occupied, num_cells, spec.grid)
        objects.append({"colour": str(colour), "shape": str(shape), "cells": cells.tolist()})
    clutter = []
    for _ in range(spec.clutter_per_video):  # colourless, high contrast, on screen the whole time
        cells = _walk(rng, spec.num_rendered_frames, 0, spec.num_rendered_frames, occupied, num_cells, spec.grid)
        grey = int(rng.integers(150, 256))
        clutter.append({"shape": str(rng.choice(SHAPES)), "grey": grey, "cells": cells.tolist()})

    masks = _shape_masks(spec.cell)
    background = rng.integers(10, 60, size=(spec.frame_size, spec.frame_size, 1)).repeat(3, axis=2)
    frames = np.empty((spec.num_rendered_frames, spec.frame_size, spec.frame_size, 3), np.uint8)
    for f in range(spec.num_rendered_frames):
        frame = background.copy()
        for thing in objects + clutter:
            cell = thing["cells"][f]
            if cell < 0:
                continue
            y, x = divmod(cell, spec.grid)
            rgb = COLOURS[thing["colour"]] if "colour" in thing else (thing["grey"],) * 3
            patch = frame[y * spec.cell:(y + 1) * spec.cell, x * spec.cell:(x + 1) * spec.cell]
            patch[masks[thing["shape"]]] = rgb
        frames[f] = frame
    return frames, {"objects": objects, "clutter": clutter}


def _options_for(rng, qtype, target, objects):
    """(problem text, 4 option texts with the correct one first) for a question about `target`."""
    others = [o for o in objects if o is not target]
    present_colours = {o["colour"] for o in objects}
    present_shapes = {o["shape"] for o in objects}
    if qtype == "colour_of_shape":
        # the other objects' colours are hard distractors: only binding colour to shape tells them apart
        wrong = [o["colour"] for o in others]
        wrong += list(rng.choice(sorted(set(COLOURS) - present_colours), 4 - 1 - len(wrong), replace=False))
        texts = [f"{c} {target['shape']}" for c in [target["colour"], *wrong]]
        return f"What colour is the {target['shape']}?", texts
    if qtype == "shape_of_colour":
        wrong = [o["shape"] for o in others]
        wrong += list(rng.choice(sorted(set(SHAPES) - present_shapes), 4 - 1 - len(wrong), replace=False))
        texts = [f"{target['colour']} {s}" for s in [target["shape"], *wrong]]
        return f"What shape is the {target['colour']} object?", texts
    present = {(o["colour"], o["shape"]) for o in objects}
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
    picks = rng.choice(len(absent), 3, replace=False)
    texts = [f"{target['colour']} {target['shape']}"] + [" ".join(absent[i]) for i in picks]
    return "Which of these objects appears in the video?", texts


def make_questions(rng, video_id: str, rel_path: str, layout) -> list[dict]:
    """One Video-R1 multiple-choice item per object of the video, each of a random question type."""
    items = []
    for k, target in enumerate(layout["objects"]):
        qtype = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
        problem, texts = _options_for(rng, qtype, target, layout["objects"])
        order = rng.permutation(4)
        options = [f"{LETTERS[i]}. {texts[j]}" for i, j in enumerate(order)]
        answer = LETTERS[int(np.where(order == 0)[0][0])]
        items.append({
            "problem_id": f"{video_id}_q{k}",
            "problem": problem,
            "data_type": "video",
            "problem_type": "multiple choice",
            "options": options,
            "solution": f"<answer>{answer}</answer>",
            "path": rel_path,
            "question_type": qtype,  # kit extension: lets tables break accuracy down by type
            "target_object": k,  # kit extension: index into the layout's objects
        })
    return items


def build_world(out_dir, seed: int, num_videos: dict[str, int], spec: WorldSpec | None = None,
                workers: int | None = None) -> dict:
    """Render every split into `out_dir`: videos/*.mp4, <split>.json (Video-R1) and <split>_layout.json.
    Layouts and frames are drawn in order from one seeded generator per split; the MP4 encoding, most of the
    time, runs in `workers` processes (default: one per CPU), which changes no byte of the output."""
    spec = spec or WorldSpec()
    out_dir = Path(out_dir)
    summary = {}
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for split_index, (split, count) in enumerate(num_videos.items()):
            rng = np.random.default_rng([seed, split_index])
            items, layouts = [], {}
            pending = deque()  # encodings in flight, bounded so that few rendered videos wait in memory
            for i in tqdm(range(count), desc=f"render {split}", mininterval=2):
                video_id = f"{split}_{i:05d}"
                rel_path = f"videos/{video_id}.mp4"
                frames, layout = render_video(rng, spec)
                pending.append(pool.submit(write_video, out_dir / rel_path, frames))
                if len(pending) > 64:
                    pending.popleft().result()
                layouts[rel_path] = layout
                items += make_questions(rng, video_id, rel_path, layout)
            for job in pending:
                job.result()  # re-raises an encoding error here
            write_json_atomic(out_dir / f"{split}_layout.json", layouts, indent=None)
            write_json_atomic(out_dir / f"{split}.json", items, indent=1)
            summary[split] = {"videos": count, "questions": len(items)}
    write_json_atomic(out_dir / "world_spec.json", vars(spec))
    return summary


def token_labels(layout: dict, num_frames: int, spec: WorldSpec) -> np.ndarray:
    """Per video token, the index of the object it shows, or -1 (background/clutter): (t, grid*grid)."""
    labels = np.full((num_frames, spec.grid * spec.grid), -1)
    for j, f in enumerate(uniform_frame_indices(spec.num_rendered_frames, num_frames)):
        for k, obj in enumerate(layout["objects"]):
            if obj["cells"][f] >= 0:
                labels[j, obj["cells"][f]] = k
    return labels
