"""The embedded video-QA world: renders MP4 videos of coloured shapes and writes Video-R1 style questions.

Each video holds a few coloured objects that appear for part of the video and move between cells
of a coarse grid, plus salient clutter that no question asks about. Every binding question is
about one object, so it needs only the few video tokens where that object is; a question without
the video is at chance (options are balanced and shuffled).

The grid cells are exactly the small video LLM's pooled video tokens (default: 64x64 frames, 8x8 patches,
2x2 pooling -> 4x4 tokens of 16x16 pixels), so the generator's layout gives per-token labels.

Two worlds come from the same generator, chosen by `WorldSpec`'s knobs (defaults: the original world, byte for
byte). The busy world (`busy_world_spec()`) is closer to real video: a larger grid, textured backgrounds of
several regions that differ per video (most tokens diverse and irrelevant), clutter in colours and shapes no
question names, six objects whose colours and shapes repeat (so counting questions have answers other than one),
some objects on screen for only one or two sampled frames, and only some objects asked about.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

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
EXTRA_SHAPES = ("star",)  # a sixth object shape, for six objects with unique attributes (WorldSpec.shapes)
QUESTION_TYPES = ("colour_of_shape", "shape_of_colour", "which_object")
# the busy world's additions: counting (how many objects of a colour / of a shape) and one temporal type
EXTRA_QUESTION_TYPES = ("count_colour", "count_shape", "appears_first")
COUNT_WORDS = ("zero", "one", "two", "three")
# clutter of the busy world: colours and shapes that no question names, as salient as the objects
CLUTTER_COLOURS = {"orange": (250, 140, 20), "pink": (250, 150, 205), "white": (245, 245, 245), "grey": (160, 160, 160)}
CLUTTER_SHAPES = ("diamond", "bars", "dots", "hourglass")


@dataclass
class WorldSpec:
    """Geometry and content of the rendered videos (frame_size / grid must match the small video LLM's token grid:
    image_size == frame_size and image_size / patch_size / 2 == grid). Defaults: the original world."""

    frame_size: int = 64  # pixels, square frames
    grid: int = 4  # cells per side == pooled video tokens per side
    num_rendered_frames: int = 16  # frames in each MP4
    objects_per_video: int = 4  # every distractor colour/shape of a question is then another object of the video
    clutter_per_video: int = 2
    min_visible: int = 5  # an object is on screen for a window of 5..10 rendered frames
    max_visible: int = 10
    # ---- knobs of the busy world (the defaults keep the original world) ----
    background: Literal["flat", "busy"] = "flat"  # flat: dark grey noise; busy: textured regions, new per video
    clutter_style: Literal["grey", "colourful"] = "grey"  # colourful: CLUTTER_SHAPES in CLUTTER_COLOURS
    attributes: Literal["unique", "counted"] = "unique"  # unique: every object its own colour and shape;
    # counted: 6 objects whose colours (and shapes) come 3 + 2 + 1, so counts of 0..3 are equally easy to ask
    brief_objects: int = 0  # objects on screen for only brief_min_visible..brief_max_visible rendered frames
    brief_min_visible: int = 2
    brief_max_visible: int = 4
    num_sampled_frames: int = 8  # frames the video LLM samples (== world.num_frames): the temporal question's
    # "first" is by sampled frame
    questions_per_video: int | None = None  # None: one question per object; else this many questions per video
    question_types: tuple[str, ...] = QUESTION_TYPES  # drawn uniformly per question (busy world: any of
    # QUESTION_TYPES + EXTRA_QUESTION_TYPES; a binding type is asked only about an object whose named attribute is unique)
    question_weights: tuple[float, ...] | None = None  # relative frequency of each of question_types (None: equal)

    def __post_init__(self):
        self.question_types = tuple(self.question_types)  # a JSON list after a round trip
        unknown = set(self.question_types) - set(QUESTION_TYPES + EXTRA_QUESTION_TYPES)
        if unknown:
            raise ValueError(f"question_types: {sorted(unknown)[0]!r} is not valid; valid: "
                             f"{', '.join(QUESTION_TYPES + EXTRA_QUESTION_TYPES)}")
        if self.question_weights is not None:
            self.question_weights = tuple(float(w) for w in self.question_weights)
            if len(self.question_weights) != len(self.question_types) or min(self.question_weights) <= 0:
                raise ValueError(f"question_weights: {list(self.question_weights)} needs one positive weight per question "
                                 f"type ({len(self.question_types)}: {', '.join(self.question_types)})")
        if self.frame_size % self.grid:
            raise ValueError(f"frame_size: {self.frame_size} is not a multiple of grid ({self.grid})")
        if self.attributes == "unique" and self.objects_per_video > min(len(COLOURS), len(SHAPES + EXTRA_SHAPES)):
            raise ValueError(f"objects_per_video: {self.objects_per_video}; unique attributes allow at most {len(COLOURS)}")
        if self.attributes == "counted" and self.objects_per_video != 6:
            raise ValueError(f"objects_per_video: {self.objects_per_video}; attributes 'counted' needs 6 (3 + 2 + 1)")
        if not self.is_original and self.questions_per_video is None:
            raise ValueError("questions_per_video: needed by the busy world's knobs (None asks every object once)")

    @property
    def shapes(self) -> tuple[str, ...]:
        """The object shapes: SHAPES, plus EXTRA_SHAPES when more objects than SHAPES must each have their own."""
        if self.attributes == "unique" and self.objects_per_video > len(SHAPES):
            return SHAPES + EXTRA_SHAPES
        return SHAPES

    @property
    def cell(self) -> int:
        return self.frame_size // self.grid

    @property
    def is_original(self) -> bool:
        """True when no busy-world knob is set: the generator then draws exactly what it always drew."""
        return (self.background, self.clutter_style, self.attributes, self.brief_objects, self.question_types) == (
            "flat", "grey", "unique", 0, QUESTION_TYPES) and self.questions_per_video is None and self.question_weights is None

    def to_json(self) -> dict:
        """The spec as world_spec.json stores it: knobs left at their defaults are not written, so the original
        world's world_spec.json keeps its bytes."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _ORIGINAL_FIELDS or value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


_ORIGINAL_FIELDS = (  # written to world_spec.json even at their defaults, as they always were
"frame_size", "grid", "num_rendered_frames", "objects_per_video", "clutter_per_video",
                    "min_visible", "max_visible")


def question_words(spec: WorldSpec) -> tuple[str, ...]:
    """Words the busy world's questions add to the original vocabulary (none for the original world)."""
    if spec.is_original:
        return ()
    return ("how", "many", "are", "there", "first") + COUNT_WORDS + EXTRA_SHAPES


def busy_world_spec(grid: int = 8) -> WorldSpec:
    """The busy world at `grid` x `grid` tokens per frame on 96-pixel frames (decord decodes frame widths that are
    not a multiple of 32 wrongly; the LLM needs image_size 96 and patch_size 48 / grid: 6 for 8x8, 8 for 6x6).
    15 rendered frames so that the 8 sampled ones are every second frame and a brief object (2..4 rendered frames)
    is seen in 1 or 2 of them."""
    return WorldSpec(frame_size=96, grid=grid, num_rendered_frames=15, objects_per_video=6,
                     clutter_per_video=6, min_visible=11, max_visible=15, background="busy", clutter_style="colourful",
                     attributes="counted", brief_objects=2, questions_per_video=4,
                     question_types=QUESTION_TYPES + ("count_colour", "count_shape"))


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
        # clutter shapes of the busy world
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


def _counted_attributes(rng) -> tuple[list[str], list[str]]:
    """Colours and shapes of the busy world's 6 objects: 3 + 2 + 1 of each (so "how many" has the answers 0..3
    equally often), with no two objects alike."""
    while True:
        colours = np.repeat(rng.choice(list(COLOURS), 3, replace=False), [3, 2, 1])
        shapes = np.repeat(rng.choice(SHAPES, 3, replace=False), [3, 2, 1])
        colours, shapes = colours[rng.permutation(6)], shapes[rng.permutation(6)]
        if len(set(zip(colours, shapes))) == 6:
            return [str(c) for c in colours], [str(s) for s in shapes]


def busy_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
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
    if spec.attributes == "counted":
        colours, shapes = _counted_attributes(rng)
    else:
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
        if spec.clutter_style == "grey":
            grey = int(rng.integers(150, 256))
            clutter.append({"shape": str(rng.choice(SHAPES)), "grey": grey, "cells": cells.tolist()})
        else:  # as varied as the objects, in colours and shapes that no question names
            clutter.append({"shape": str(rng.choice(CLUTTER_SHAPES)), "clutter_colour": str(rng.choice(list(CLUTTER_COLOURS))),
                            "cells": cells.tolist()})

    masks = _shape_masks(spec.cell)
    layout = {"objects": objects, "clutter": clutter}
    if spec.background == "flat":
        background = rng.integers(10, 60, size=(spec.frame_size, spec.frame_size, 1)).repeat(3, axis=2)
    else:
        background, layout["background_regions"] = busy_background(rng, spec.frame_size)
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
    if "colour" in thing:
        return COLOURS[thing["colour"]]
    if "clutter_colour" in thing:
        return CLUTTER_COLOURS[thing["clutter_colour"]]
    return (thing["grey"],) * 3


def _options_for(rng, qtype, target, objects, shapes=SHAPES):
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


def make_questions(rng, video_id: str, rel_path: str, layout, spec: WorldSpec | None = None) -> list[dict]:
    """The original world: one Video-R1 multiple-choice item per object of the video, each of a random question
    type. The busy world: `spec.questions_per_video` items (busy_questions)."""
    if spec is not None and not spec.is_original:
        return busy_questions(rng, video_id, rel_path, layout, spec)
    items = []
    for k, target in enumerate(layout["objects"]):
        qtype = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
        problem, texts = _options_for(rng, qtype, target, layout["objects"])
        items.append(_item(rng, f"{video_id}_q{k}", rel_path, problem, texts, qtype, k))
    return items


def _item(rng, problem_id, rel_path, problem, texts, qtype, target, targets=None) -> dict:
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
        "target_object": target,  # kit extension: index into the layout's objects (None: a counting question)
    }
    if targets is not None:
        item["target_objects"] = targets  # kit extension: every object the question is about (counting, temporal)
    return item


def first_sampled_frame(cells: list[int], spec: WorldSpec) -> int | None:
    """Index of the first sampled frame that shows an object (None: never sampled)."""
    seen = [j for j, f in enumerate(uniform_frame_indices(spec.num_rendered_frames, spec.num_sampled_frames))
            if cells[f] >= 0]
    return seen[0] if seen else None


def busy_questions(rng, video_id: str, rel_path: str, layout, spec: WorldSpec) -> list[dict]:
    """`spec.questions_per_video` items of types drawn from `spec.question_types`; a binding type only about an
    object whose named attribute is unique in the video (so the question is well posed), no object asked twice,
    no count asked twice; a type with no such object left is drawn again."""
    objects = layout["objects"]
    colour_count = {c: sum(o["colour"] == c for o in objects) for c in COLOURS}
    shape_count = {s: sum(o["shape"] == s for o in objects) for s in spec.shapes}
    asked, counted, items = set(), set(), []
    for _ in range(1000):  # a type without a candidate is drawn again; 1000 draws without enough questions is a bad spec
        if len(items) == spec.questions_per_video:
            return items
        if spec.question_weights is None:
            qtype = spec.question_types[int(rng.integers(len(spec.question_types)))]
        else:
            weights = np.array(spec.question_weights)
            qtype = spec.question_types[int(rng.choice(len(weights), p=weights / weights.sum()))]
        free = [k for k in range(len(objects)) if k not in asked]
        if qtype in ("count_colour", "count_shape"):
            count = colour_count if qtype == "count_colour" else shape_count
            answer = int(rng.integers(len(COUNT_WORDS)))  # 0..3, equally often (3 + 2 + 1 objects, absent values)
            values = sorted(v for v, n in count.items() if n == answer and (qtype, v) not in counted)
            if not values:
                continue
            value = str(rng.choice(values))
            counted.add((qtype, value))
            texts = [COUNT_WORDS[answer]] + [w for w in COUNT_WORDS if w != COUNT_WORDS[answer]]
            key = "colour" if qtype == "count_colour" else "shape"
            targets = [k for k, o in enumerate(objects) if o[key] == value]
            items.append(_item(rng, f"{video_id}_q{len(items)}", rel_path, f"How many {value} objects are there?", texts,
                               qtype, None, targets))
            continue
        if qtype == "appears_first":
            firsts = {k: first_sampled_frame(o["cells"], spec) for k, o in enumerate(objects)}
            by_first = {}
            for k in rng.permutation(len(objects)):
                by_first.setdefault(firsts[int(k)], int(k))  # one object per first frame
            if len(by_first) < 4 or "appears_first" in counted:
                continue
            picks = [by_first[f] for f in sorted(rng.choice(sorted(by_first), 4, replace=False))]  # earliest first
            counted.add("appears_first")
            texts = [f"{objects[k]['colour']} {objects[k]['shape']}" for k in picks]
            items.append(_item(rng, f"{video_id}_q{len(items)}", rel_path, "Which of these objects appears first?",
                               texts, qtype, picks[0], picks))
            continue
        if qtype == "colour_of_shape":
            free = [k for k in free if shape_count[objects[k]["shape"]] == 1]
        elif qtype == "shape_of_colour":
            free = [k for k in free if colour_count[objects[k]["colour"]] == 1]
        if not free:
            continue
        k = int(rng.choice(free))
        asked.add(k)
        problem, texts = _options_for(rng, qtype, objects[k], objects, spec.shapes)
        items.append(_item(rng, f"{video_id}_q{len(items)}", rel_path, problem, texts, qtype, k))
    raise ValueError(f"questions_per_video: {spec.questions_per_video} questions of types {list(spec.question_types)} "
                     f"cannot be asked about {video_id} (a binding type has one candidate per video)")


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
