"""Read Video-R1 style training JSON against a media root: the kit's items, their media and question text.

One job: turn `Video-R1-260k.json` (or a blind-filtered copy such as the CaCoVID release's
`Video-R1-llava_onevision_filtered.json`) plus the folder its media lie in into kit items, read each
item's video or image as uint8 frames, give the question text Video-R1 prompts with, and write kept
items back in the same schema.

What was followed (public sources, read through the code search):
- Fields: Video-R1's `src/r1-v/src/open_r1/grpo.py` (forks of tulerfeng/Video-R1, e.g.
  Xiaoshan-jun/Video-R1) reads `problem`, `problem_type`, `options`, `data_type`, `path`, `solution`;
  the 260k JSON also carries `problem_id`, `process` and `data_source`, which are kept untouched.
- Paths: Video-R1's trainer opens `os.getcwd() + "/Video-R1-data" + item["path"][1:]`, i.e. `path`
  ("./LLaVA-Video-178K/...") is relative to the Video-R1-data folder; that folder is `media_root` here.
- The CaCoVID release's loader (LivingFutureLab/CaCoVID `src/r1-v/src/open_r1/grpo_video.py`,
  `CustomDataset`) asserts `problem`, `solution`, `modality_type`, `problem_type` and opens
  `os.path.join(video_root, item["video"])`: it names two fields differently (`modality_type` for
  `data_type`, `video` for `path`) and trains on videos only (it raises on any other modality).
  Items with those names are accepted as they are and written back with them.
- Prompts: Video-R1's QUESTION_TEMPLATE and TYPE_TEMPLATE, options appended after "Options:\\n" for
  multiple choice (`make_conversation_image_and_video`); the release's own, shorter templates
  (no <think>/<answer> instructions, options not appended) via `question_prompt(..., template="cacovid")`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from cacovid_lib.data.schema import VIDEO_R1_FIELDS
from cacovid_lib.data.video_io import read_video
from cacovid_lib.io_utils import KitInputError, read_json, write_json_atomic

DATA_TYPES = ("video", "image")
PROBLEM_TYPES = ("multiple choice", "numerical", "OCR", "free-form", "regression")
RELEASE_NAMES = {"data_type": "modality_type", "path": "video"}  # Video-R1 name -> CaCoVID release name
RELEASE_FIELDS = ("problem", "solution", "modality_type", "problem_type", "video")  # what grpo_video.py reads
KIT_KEYS = ("media_path",)  # added by load_video_r1, dropped by write_filtered

# Video-R1 grpo.py, verbatim.
QUESTION_TEMPLATE = (
    "{Question}\n"
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
    "'let's break it down', etc, or other natural language thought expressions "
    "It's encouraged to include self-reflection or verification in the reasoning process. "
    "Provide your detailed reasoning between the <think> </think> tags, and then give your final answer "
    "between the <answer> </answer> tags."
)
TYPE_TEMPLATE = {
    "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags.",
    "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    "OCR": " Please transcribe text from the image/video clearly and provide your text answer within the <answer> </answer> tags.",
    "free-form": " Please provide your text answer within the <answer> </answer> tags.",
    "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
}
# CaCoVID release grpo_video.py, verbatim: the question as is, no reasoning instructions.
CACOVID_QUESTION_TEMPLATE = "{Question}\n"
CACOVID_TYPE_TEMPLATE = {
    "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.).",
    "numerical": " Please provide the numerical value (e.g., 42 or 3.14).",
    "OCR": " Please transcribe text from the image/video clearly and provide your text answer.",
    "free-form": " Please provide your text answer.",
    "regression": " Please provide the numerical value (e.g., 42 or 3.14).",
}


def _field(item: dict, name: str):
    """`item[name]`, or the CaCoVID release's name for it (`data_type`/`path` are `modality_type`/`video`)."""
    return item[name] if name in item else item[RELEASE_NAMES[name]]


def _uses_release_names(item: dict) -> bool:
    return "data_type" not in item and "modality_type" in item


def _check_choices(label: str, values: Iterable[str], valid: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise KitInputError(f"{label} {bad[0]!r} is not one of: {', '.join(valid)}")


def _check_item(json_file: Path, n: int, item) -> None:
    """One-line KitInputError naming the file, the item index and the field, for the first problem found."""
    where = f"{json_file}: item {n}"
    if not isinstance(item, dict):
        raise KitInputError(f"{where}: expected a JSON object, got {type(item).__name__}")
    where += f" ({item.get('problem_id', '?')})"
    required = RELEASE_FIELDS if _uses_release_names(item) else VIDEO_R1_FIELDS
    missing = [f for f in required if f not in item]
    if missing:
        raise KitInputError(f"{where}: lacks field {missing[0]!r}")
    if "options" in item and not isinstance(item["options"], list):
        raise KitInputError(f"{where}: field 'options' must be a list, got {type(item['options']).__name__}")
    try:
        _check_choices("data_type", [_field(item, "data_type")], DATA_TYPES)
        _check_choices("problem_type", [item["problem_type"]], PROBLEM_TYPES)
    except KitInputError as err:
        raise KitInputError(f"{where}: {err}") from None


def _media_path(json_file: Path, n: int, item: dict, media_root: Path) -> str:
    """The absolute path of the item's media, `media_root / path` normalised; one-line KitInputError when it lies
    outside the media root ("../", an absolute path elsewhere): a training file must not make the kit read, nor
    blind filtering write out, files the user never pointed it at. The check is on the path as written (abspath,
    not resolve(): no filesystem calls per item, so 260k items load quickly), so links inside the root still work."""
    root = os.path.abspath(media_root)
    path = os.path.abspath(os.path.join(root, _field(item, "path")))
    if os.path.commonpath([root, path]) != root:
        raise KitInputError(f"{json_file}: item {n} ({item.get('problem_id', '?')}): media path "
                            f"{_field(item, 'path')!r} leaves the media root {root}")
    return path


def _missing_media(items: list[dict]) -> list[str]:
    return [it["media_path"] for it in items if not os.path.isfile(it["media_path"])]


def load_video_r1(json_file, media_root, data_types: Iterable[str] = ("video", "image"),
                  problem_types: Iterable[str] | None = None, limit: int | None = None,
                  check_media: bool = False) -> list[dict]:
    """Items of a Video-R1 style JSON list whose data_type and problem_type are among those asked for
    (all problem types when None), in file order, at most `limit`. Every item of the file is validated.

    Each item is the file's dict unchanged plus `media_path`: the absolute path of `media_root / path`
    (normalised, so Video-R1's leading "./" is harmless); a path that leaves the media root is refused, whatever
    `check_media` says. `check_media`: raise one line saying how many
    of the kept items' media files are missing and which is the first."""
    json_file, media_root = Path(json_file), Path(media_root)
    data_types = (data_types,) if isinstance(data_types, str) else tuple(data_types)  # "video" is not 5 types
    problem_types = PROBLEM_TYPES if problem_types is None else problem_types
    problem_types = (problem_types,) if isinstance(problem_types, str) else tuple(problem_types)
    _check_choices("data_types:", data_types, DATA_TYPES)
    _check_choices("problem_types:", problem_types, PROBLEM_TYPES)
    if not media_root.is_dir():
        raise KitInputError(f"{media_root}: media root folder not found")
    raw = read_json(json_file)
    if not isinstance(raw, list):
        raise KitInputError(f"{json_file}: expected a JSON list of items, got {type(raw).__name__}")
    for n, item in enumerate(raw):
        _check_item(json_file, n, item)
    kept = [(n, it) for n, it in enumerate(raw) if _field(it, "data_type") in data_types and it["problem_type"] in problem_types][:limit]
    items = [dict(it, media_path=_media_path(json_file, n, it, media_root)) for n, it in kept]
    if check_media:
        missing = _missing_media(items)
        if missing:
            raise KitInputError(f"{json_file}: {len(missing)} of {len(items)} media files missing under {media_root}, "
                                f"first: {missing[0]}")
    return items


def _read_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise KitInputError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))  # (H, W, 3) uint8, whatever the file's mode
    except (UnidentifiedImageError, OSError) as err:
        raise KitInputError(f"{path}: cannot read image ({str(err).splitlines()[0][:120]})") from None


def read_media(item: dict, num_frames: int) -> np.ndarray:
    """The item's media as uint8 `(num_frames, H, W, 3)` RGB.

    Videos: `num_frames` uniformly spaced frames through the kit's decord reader (`video_io.read_video`,
    floor of `linspace(0, n-1, t)`). The release samples differently: at most 1 frame per second and at
    most `max_num_images` (32) frames, rounded indices, so short clips give fewer frames; the kit's
    adapters and policy need a fixed t, hence uniform sampling of exactly t frames.

    Images: read with PIL and repeated `num_frames` times. This is a choice, said plainly: LLaVA-OneVision
    treats an image as a single frame (its own image path and token layout), and the CaCoVID release trains
    on videos only. Repeating the image gives the fixed-t input the kit's adapters need, but its t identical
    frames make t copies of every token, so a keep ratio means something else than for a video; load with
    `data_types=("video",)` to train as the release does."""
    if "media_path" not in item:
        raise KitInputError(f"item {item.get('problem_id', '?')}: no media_path; load items with load_video_r1")
    if _field(item, "data_type") == "video":
        return read_video(item["media_path"], num_frames)
    frame = _read_image(item["media_path"])
    return np.repeat(frame[None], num_frames, axis=0)


def question_prompt(item: dict, template: Literal["video-r1", "cacovid"] = "video-r1") -> str:
    """The question text for generation-based rewards.

    "video-r1": Video-R1's grpo.py: for multiple choice, `problem + "Options:\\n"` and one line per option
    (no separator before "Options:", as in their code), then QUESTION_TEMPLATE + TYPE_TEMPLATE[problem_type].
    "cacovid": the release's grpo_video.py: `problem + "\\n"` + its short type template; it does not
    append `options`, so a multiple-choice `problem` must already hold them."""
    problem_type = item["problem_type"]
    if template == "cacovid":
        return CACOVID_QUESTION_TEMPLATE.format(Question=item["problem"]) + CACOVID_TYPE_TEMPLATE[problem_type]
    if template != "video-r1":
        raise KitInputError(f"template {template!r} is not one of: video-r1, cacovid")
    question = item["problem"]
    if problem_type == "multiple choice":
        question += "Options:\n" + "".join(option + "\n" for option in item["options"])
    return QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE[problem_type]


def policy_question(item: dict) -> str:
    """The question text the kit trains a real model's policy with (put through the model's chat template):
    the release's short templates (`question_prompt(item, "cacovid")`: no reasoning instructions, so the answer
    is in the first few generated tokens), with a multiple-choice item's options appended as Video-R1's grpo.py
    appends them (`problem + "Options:\n"`, one line per option), because the release's template does not add
    them and a Video-R1 `problem` need not hold them. Items without `options` (the release's filtered file has no
    such field) keep their `problem` as it is."""
    problem = item["problem"]
    if item["problem_type"] == "multiple choice" and item.get("options"):
        problem += "Options:\n" + "".join(option + "\n" for option in item["options"])
    return CACOVID_QUESTION_TEMPLATE.format(Question=problem) + CACOVID_TYPE_TEMPLATE[item["problem_type"]]


def write_filtered(items: Iterable[dict], out_file) -> int:
    """Write `items` as a JSON list in the schema they were read in (the kit's added keys dropped),
    atomically, like the release's `Video-R1-llava_onevision_filtered.json`. Returns how many were written."""
    rows = [{k: v for k, v in item.items() if k not in KIT_KEYS} for item in items]
    write_json_atomic(out_file, rows, indent=1)
    return len(rows)
