"""The Video-R1 item schema every data source of the kit shares: the fields an item must have, its answer letter
and its option texts. (The embedded world writes it; Video-R1 training JSON and the benchmarks are read into it.)"""
from __future__ import annotations

import numpy as np

from cacovid_lib.io_utils import KitInputError, read_json

# Two alphabets of option letters. The embedded world always asks four options, and its tokenizer's vocabulary holds
# exactly these letters, so LETTERS is the world's; real data (Video-R1 items, the benchmarks) may have more options,
# lettered from OPTION_LETTERS.
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # A..Z: options of Video-R1 items and of real benchmarks
LETTERS = OPTION_LETTERS[:4]  # "ABCD": the embedded world's four options (embedded.world, embedded.tokenizer)
VIDEO_R1_FIELDS = ("problem_id", "problem", "data_type", "problem_type", "options", "solution", "path")


def load_items(json_path) -> list[dict]:
    """Read a Video-R1 annotation file, checking every item has the fields the kit needs."""
    items = read_json(json_path)
    if not isinstance(items, list):
        raise KitInputError(f"{json_path}: expected a JSON list of items, got {type(items).__name__}")
    for n, item in enumerate(items):
        missing = [f for f in VIDEO_R1_FIELDS if f not in item]
        if missing:
            raise KitInputError(f"{json_path}: item {n} ({item.get('problem_id', '?')}) lacks field(s) {', '.join(missing)}")
    return items


def answer_letter(item: dict) -> str:
    """The letter inside `<answer>X</answer>`."""
    return item["solution"].split("<answer>")[-1].split("</answer>")[0].strip()


def option_texts(item: dict) -> list[str]:
    """Option texts without their `A. ` prefixes."""
    return [o.split(". ", 1)[1] if ". " in o[:4] else o for o in item["options"]]


def asked_objects(item: dict) -> list[int]:
    """The objects of its video's layout a question is about (the embedded world's kit extension): its
    `target_object`, as a list."""
    return [item["target_object"]]


def asked_token_mask(object_labels: np.ndarray, item: dict) -> np.ndarray:
    """Which video tokens show an object the question asks about: a bool array of `object_labels`' shape (the
    object index each token of the question's video shows, -1 for none)."""
    return np.isin(object_labels, asked_objects(item))
