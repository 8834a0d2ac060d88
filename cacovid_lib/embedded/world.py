"""The embedded video-QA world: renders MP4 videos of coloured shapes and writes Video-R1 style questions.

Each video holds six coloured objects that move between the cells of a coarse grid, most of them on screen for
most of the video and two only briefly, on a textured background of several regions that differ per video, among
clutter as salient as the objects in colours and shapes no question names. Every question is about one object
(its colour, its shape, or which object appears), so it needs only the few video tokens where that object is;
a question without the video is at chance (options are balanced and shuffled). Most tokens are diverse and
irrelevant to the question, as in real video.

The grid cells are exactly the small video LLM's pooled video tokens (96-pixel frames, 8-pixel patches pooled
2 x 2 -> 6 x 6 tokens of 16 x 16 pixels), so the generator's layout gives per-token labels.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cacovid_lib.data.schema import LETTERS
from cacovid_lib.data.video_io import uniform_frame_indices, write_video
from cacovid_lib.io_utils import COUNT, KitInputError, Range, check_ranges, read_json, write_json_atomic

COLOURS = {
    "red": (235, 45, 45),
    "green": (40, 200, 70),
    "blue": (55, 95, 245),
    "yellow": (240, 220, 40),
    "purple": (175, 70, 230),
    "cyan": (40, 220, 225),
}
SHAPES = ("circle", "square", "triangle", "cross", "ring")
EXTRA_SHAPES = ("star",)  # a sixth object shape, for six objects with their own colour and shape (WorldSpec.shapes)
QUESTION_TYPES = ("colour_of_shape", "shape_of_colour", "which_object")  # drawn uniformly per question
# clutter: colours and shapes that no question names, as salient as the objects
CLUTTER_COLOURS = {"orange": (250, 140, 20), "pink": (250, 150, 205), "white": (245, 245, 245), "grey": (160, 160, 160)}
CLUTTER_SHAPES = ("diamond", "bars", "dots", "hourglass")


@dataclass
class WorldSpec:
    """Geometry and content of the rendered videos. frame_size / grid must match the small video LLM's token grid
    (image_size == frame_size and image_size / patch_size / 2 == grid)."""

    frame_size: int = 96  # pixels, square frames (decord decodes frame widths that are not a multiple of 32 wrongly)
    grid: int = 6  # cells per side == pooled video tokens per side
    num_rendered_frames: int = 15  # frames in each MP4; the video LLM's 8 sampled frames are then every second one,
    # so a brief object is seen in 1 or 2 of them
    objects_per_video: int = 6  # each its own colour and its own shape, so every question names a unique attribute
    clutter_per_video: int = 6  # on screen the whole time
    min_visible: int = 11  # a (persistent) object is on screen for a window of min_visible..max_visible rendered frames
    max_visible: int = 15
    brief_objects: int = 2  # of the objects, these are on screen for only brief_min_visible..brief_max_visible frames
    brief_min_visible: int = 2
    brief_max_visible: int = 4
    questions_per_video: int = 4  # each about another object of the video

    def __post_init__(self):
        check_ranges(self, frame_size=COUNT, grid=COUNT, num_rendered_frames=COUNT, objects_per_video=COUNT,
                     clutter_per_video=Range(0), min_visible=COUNT, max_visible=COUNT, brief_objects=Range(0),
                     brief_min_visible=COUNT, brief_max_visible=COUNT, questions_per_video=COUNT)
        if self.frame_size % self.grid:
            raise ValueError(f"frame_size: {self.frame_size} is not a multiple of grid ({self.grid})")
        if self.objects_per_video > min(len(COLOURS), len(SHAPES + EXTRA_SHAPES)):
            raise ValueError(f"objects_per_video: {self.objects_per_video}; unique attributes allow at most {len(COLOURS)}")
        if not 1 <= self.questions_per_video <= self.objects_per_video:
            raise ValueError(f"questions_per_video: {self.questions_per_video}; each question asks about another object, "
                             f"so 1..objects_per_video ({self.objects_per_video})")

    @property
    def shapes(self) -> tuple[str, ...]:
        """The object shapes: SHAPES, plus EXTRA_SHAPES when more objects than SHAPES must each have their own."""
        if self.objects_per_video > len(SHAPES):
            return SHAPES + EXTRA_SHAPES
        return SHAPES

    @property
    def cell(self) -> int:
        return self.frame_size // self.grid

    def to_json(self) -> dict:
        """The spec as world_spec.json stores it: every field, so the file reads the same whatever the defaults."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def read_world_spec(world_dir) -> WorldSpec:
    """The spec of a world rendered by build_world, from its world_spec.json. One KitInputError line when the file
    is missing or names a field WorldSpec does not have (a world of another version of the generator: render it
    again)."""
    path = Path(world_dir) / "world_spec.json"
    if not path.is_file():
        raise KitInputError(f"{Path(world_dir)}: no world_spec.json (is this a world built by build_world?)")
    stored = read_json(path)
    unknown = sorted(set(stored) - {f.name for f in fields(WorldSpec)})
    if unknown:
        raise KitInputError(f"{path}: unknown WorldSpec field(s) {', '.join(unknown)}; render the world again (build_world)")
    return WorldSpec(**stored)


def _shape_masks(cell: int) -> dict[str, np.ndarray]:
    """Boolean (cell, cell) masks of each shape, about 3/4 of a cell wide, centred."""
    yy, xx = np.mgrid[0:cell, 0:cell] + 0.5
    c = cell / 2
    r = cell * 0.38
    dy, dx = yy - c, xx - c
    dist = np.sqrt(dx**2 + dy**2)
    small = cell < 16  # below 16 pixels, strokes are made thicker so their colour survives the video's chroma subsampling
    arm = cell * (0.2 if small else 0.12)
    inner = 0.4 if small else 0.55
    return {
        "circle": dist <= r,
        "square": (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85),
        "triangle": (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6),
        "cross": ((np.abs(dx) <= arm) | (np.abs(dy) <= arm)) & (np.abs(dx) <= r) & (np.abs(dy) <= r),
        "ring": (dist <= r) & (dist >= r * inner),
        # clutter shapes
        "diamond": np.abs(dx) + np.abs(dy) <= r * 1.15,
        "bars": (np.abs(dx) <= r) & (np.abs(dy) <= r) & (np.floor((dy + r) / (r * 0.5)) % 2 == 0),
        "dots": (np.hypot(np.abs(dx) - r * 0.5, np.abs(dy) - r * 0.5) <= r * 0.35),
        "hourglass": (np.abs(dy) <= r) & (np.abs(dx) <= np.abs(dy) * 0.9 + arm * 0.3),
        # the sixth object shape (EXTRA_SHAPES): five points
        "star": dist <= r * (0.55 + 0.45 * np.cos(5 * np.arctan2(dx, -dy))),
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


def textured_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """(size, size, 3) uint8 and its number of regions: 4..8 Voronoi regions, each a gradient, stripes, checks or noise between two muted
    colours (channels 20..130, darker and duller than any object or clutter colour)."""
    yy, xx = np.mgrid[0:size, 0:size] / size  # (S, S) in [0, 1)
    seeds = rng.random((int(rng.integers(4, 9)), 2))  # (R, 2) region centres
    region = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)  # (S, S)
    out = np.empty((size, size, 3))
    for r in range(len(seeds)):
        low, high = rng.uniform(20, 130, 3), rng.uniform(20, 130, 3)
        angle, freq = rng.uniform(0, np.pi), rng.uniform(3, 10)
        along = xx * np.cos(angle) + yy * np.sin(angle)  # (S, S) coordinate across the texture
        kind = int(rng.integers(4))
        if kind == 0:
            mix = (along - along.min()) / np.ptp(along)  # gradient
        elif kind == 1:
            mix = (np.sin(2 * np.pi * freq * along) > 0).astype(float)  # stripes
        elif kind == 2:
            mix = ((np.floor(xx * freq) + np.floor(yy * freq)) % 2).astype(float)  # checks
        else:
            mix = rng.random((size, size))  # noise
        inside = region == r
        out[inside] = low + mix[inside, None] * (high - low)
    return out.round().astype(np.uint8), len(seeds)


def render_video(rng: np.random.Generator, spec: WorldSpec):
    """Render one video. Returns uint8 frames (T, H, W, 3) and the layout of its objects and clutter."""
    num_cells = spec.grid * spec.grid
    colours = rng.choice(list(COLOURS), spec.objects_per_video, replace=False)
    shapes = rng.choice(spec.shapes, spec.objects_per_video, replace=False)
    occupied = np.zeros((spec.num_rendered_frames, num_cells), bool)
    objects = []
    for k, (colour, shape) in enumerate(zip(colours, shapes)):
        brief = k >= spec.objects_per_video - spec.brief_objects  # the last ones (attributes are shuffled)
        low, high = (spec.brief_min_visible, spec.brief_max_visible) if brief else (spec.min_visible, spec.max_visible)
        length = int(rng.integers(low, high + 1))
        start = int(rng.integers(0, spec.num_rendered_frames - length + 1))
        cells = _walk(rng, spec.num_rendered_frames, start, length, occupied, num_cells, spec.grid)
        objects.append({"colour": str(colour), "shape": str(shape), "cells": cells.tolist()})
    clutter = []
    for _ in range(spec.clutter_per_video):  # high contrast, on screen the whole time
        cells = _walk(rng, spec.num_rendered_frames, 0, spec.num_rendered_frames, occupied, num_cells, spec.grid)
        clutter.append({"shape": str(rng.choice(CLUTTER_SHAPES)), "clutter_colour": str(rng.choice(list(CLUTTER_COLOURS))),
                        "cells": cells.tolist()})

    masks = _shape_masks(spec.cell)
    background, regions = textured_background(rng, spec.frame_size)
    layout = {"objects": objects, "clutter": clutter, "background_regions": regions}
    frames = np.empty((spec.num_rendered_frames, spec.frame_size, spec.frame_size, 3), np.uint8)
    for f in range(spec.num_rendered_frames):
        frame = background.copy()
        for thing in objects + clutter:
            cell = thing["cells"][f]
            if cell < 0:
                continue
            y, x = divmod(cell, spec.grid)
            patch = frame[y * spec.cell:(y + 1) * spec.cell, x * spec.cell:(x + 1) * spec.cell]
            patch[masks[thing["shape"]]] = _rgb(thing)
        frames[f] = frame
    return frames, layout


def _rgb(thing: dict) -> tuple:
    return COLOURS[thing["colour"]] if "colour" in thing else CLUTTER_COLOURS[thing["clutter_colour"]]


def _options_for(rng, qtype, target, objects, shapes):
    """(problem text, 4 option texts with the correct one first) for a question about `target`; `shapes`: the
    world's object shapes (WorldSpec.shapes)."""
    others = [o for o in objects if o is not target]
    present_colours = {o["colour"] for o in objects}
    present_shapes = {o["shape"] for o in objects}
    if qtype == "colour_of_shape":
        # the other objects' colours are hard distractors: only binding colour to shape tells them apart
        wrong = list(dict.fromkeys(o["colour"] for o in others if o["colour"] != target["colour"]))[:3]
        wrong += list(rng.choice(sorted(set(COLOURS) - present_colours), 4 - 1 - len(wrong), replace=False))
        texts = [f"{c} {target['shape']}" for c in [target["colour"], *wrong]]
        return f"What colour is the {target['shape']}?", texts
    if qtype == "shape_of_colour":
        wrong = list(dict.fromkeys(o["shape"] for o in others if o["shape"] != target["shape"]))[:3]
        wrong += list(rng.choice(sorted(set(shapes) - present_shapes), 4 - 1 - len(wrong), replace=False))
        texts = [f"{target['colour']} {s}" for s in [target["shape"], *wrong]]
        return f"What shape is the {target['colour']} object?", texts
    present = {(o["colour"], o["shape"]) for o in objects}
    absent = [(c, s) for c in COLOURS for s in shapes if (c, s) not in present]
    picks = rng.choice(len(absent), 3, replace=False)
    texts = [f"{target['colour']} {target['shape']}"] + [" ".join(absent[i]) for i in picks]
    return "Which of these objects appears in the video?", texts


def make_questions(rng, video_id: str, rel_path: str, layout, spec: WorldSpec) -> list[dict]:
    """`spec.questions_per_video` Video-R1 multiple-choice items, each about another object of the video and of a
    question type drawn uniformly from QUESTION_TYPES."""
    objects, asked, items = layout["objects"], set(), []
    for q in range(spec.questions_per_video):
        qtype = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
        k = int(rng.choice([k for k in range(len(objects)) if k not in asked]))
        asked.add(k)
        problem, texts = _options_for(rng, qtype, objects[k], objects, spec.shapes)
        items.append(_item(rng, f"{video_id}_q{q}", rel_path, problem, texts, qtype, k))
    return items


def _item(rng, problem_id, rel_path, problem, texts, qtype, target) -> dict:
    """A Video-R1 multiple-choice item; `texts` has the correct option first, the letters are shuffled."""
    order = rng.permutation(4)
    item = {
        "problem_id": problem_id,
        "problem": problem,
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": [f"{LETTERS[i]}. {texts[j]}" for i, j in enumerate(order)],
        "solution": f"<answer>{LETTERS[int(np.where(order == 0)[0][0])]}</answer>",
        "path": rel_path,
        "question_type": qtype,  # kit extension: lets tables break accuracy down by type
        "target_object": target,  # kit extension: index into the layout's objects
    }
    return item


SPLITS = ("train", "val", "test")
"""the world's splits; a split's index seeds its generator"""


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The generator of one split, seeded by `seed` and the split's fixed index in SPLITS, so "test" draws the same
    videos whether or not "train" is rendered too. A name outside SPLITS is a KitInputError."""
    if split not in SPLITS:
        raise KitInputError(f"num_videos: no split named {split!r} (the world's splits: {', '.join(SPLITS)})")
    return np.random.default_rng([seed, SPLITS.index(split)])


def build_world(out_dir, seed: int, num_videos: dict[str, int], spec: WorldSpec | None = None,
                workers: int | None = None) -> dict:
    """Render every split into `out_dir`: videos/*.mp4, <split>.json (Video-R1) and <split>_layout.json.
    Layouts and frames are drawn in order from one generator per split, seeded by `seed` and the split's index
    (split_rng), so a split's videos do not depend on which other splits are rendered with it; the MP4 encoding,
    most of the time, runs in `workers` processes (default: one per CPU), which changes no byte of the output."""
    spec = spec or WorldSpec()
    out_dir = Path(out_dir)
    summary = {}
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for split, count in num_videos.items():
            rng = split_rng(seed, split)
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
                items += make_questions(rng, video_id, rel_path, layout, spec)
            for job in pending:
                job.result()  # re-raises an encoding error here
            write_json_atomic(out_dir / f"{split}_layout.json", layouts, indent=None)
            write_json_atomic(out_dir / f"{split}.json", items, indent=1)
            summary[split] = {"videos": count, "questions": len(items)}
    write_json_atomic(out_dir / "world_spec.json", spec.to_json())
    return summary


def token_labels(layout: dict, num_frames: int, spec: WorldSpec, kind: str = "objects") -> np.ndarray:
    """Per video token, the index of the object (kind "objects") or clutter item (kind "clutter") it shows, or -1
    (anything else): (t, grid*grid)."""
    labels = np.full((num_frames, spec.grid * spec.grid), -1)
    for j, f in enumerate(uniform_frame_indices(spec.num_rendered_frames, num_frames)):
        for k, thing in enumerate(layout[kind]):
            if thing["cells"][f] >= 0:
                labels[j, thing["cells"][f]] = k
    return labels


def frame_cells(frames: np.ndarray, grid: int) -> np.ndarray:
    """The pixels of each grid cell, i.e. of each video token, in token order (frame by frame, row by row):
    frames (..., t, H, W, C) -> (..., t*grid*grid, H/grid, W/grid, C), a copy in the frames' dtype."""
    *lead, t, height, width, channels = frames.shape
    ch, cw = height // grid, width // grid
    x = frames.reshape(*lead, t, grid, ch, grid, cw, channels)
    x = np.moveaxis(x, -3, -4)  # (..., t, grid, grid, ch, cw, C)
    return x.reshape(*lead, t * grid * grid, ch, cw, channels)
