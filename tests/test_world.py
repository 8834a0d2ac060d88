"""The embedded world: Video-R1 format, determinism, balance, per-token labels that match the pixels."""
import json

import numpy as np
import pytest

from cacovid_lib.data.schema import VIDEO_R1_FIELDS, answer_letter, load_items, option_texts
from cacovid_lib.data.video_io import read_video
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.world import COLOURS, WorldSpec, build_world
from cacovid_lib.io_utils import KitInputError


def test_items_are_video_r1_multiple_choice(tiny_world):
    items = load_items(tiny_world / "train.json")
    assert len(items) == 12 * WorldSpec().objects_per_video  # one question per object
    for item in items:
        assert set(VIDEO_R1_FIELDS) <= set(item)
        assert item["data_type"] == "video" and item["problem_type"] == "multiple choice"
        assert [o[:3] for o in item["options"]] == ["A. ", "B. ", "C. ", "D. "]
        assert len(set(option_texts(item))) == 4
        assert answer_letter(item) in "ABCD"
        assert (tiny_world / item["path"]).is_file()


def test_world_is_deterministic_in_its_seed(tmp_path, tiny_world):
    # the fixture encoded its videos in parallel (one process per CPU); this build encodes them in one process
    build_world(tmp_path, seed=1, num_videos={"train": 12}, workers=1)
    assert json.loads((tmp_path / "train.json").read_text()) == json.loads((tiny_world / "train.json").read_text())
    for i in range(12):
        assert (tmp_path / f"videos/train_{i:05d}.mp4").read_bytes() == (tiny_world / f"videos/train_{i:05d}.mp4").read_bytes()
    a = read_video(tmp_path / "videos/train_00003.mp4", 8)
    b = read_video(tiny_world / "videos/train_00003.mp4", 8)
    assert np.array_equal(a, b)
    build_world(tmp_path / "other", seed=2, num_videos={"train": 12})
    assert (tmp_path / "other/train.json").read_text() != (tmp_path / "train.json").read_text()


def test_answers_are_balanced_so_text_alone_is_at_chance(tmp_path):
    build_world(tmp_path, seed=3, num_videos={"train": 200})
    items = load_items(tmp_path / "train.json")
    letters = np.array(["ABCD".index(answer_letter(it)) for it in items])
    assert np.all(np.abs(np.bincount(letters, minlength=4) / len(letters) - 0.25) < 0.05)
    # the correct option's text is not predictable from the option list: its colour is as common among
    # the other options as any other option's colour
    types = {it["question_type"] for it in items}
    assert types == {"colour_of_shape", "shape_of_colour", "which_object"}


def test_token_labels_point_at_the_object_pixels(tiny_world):
    split = load_split(tiny_world, "test", 8)
    spec = WorldSpec()
    for v, layout in enumerate(split.layouts):
        labels = split.object_labels[v]  # (t, h*w)
        for j in range(8):
            for cell in range(spec.grid * spec.grid):
                y, x = divmod(cell, spec.grid)
                patch = split.frames[v, j, y * spec.cell:(y + 1) * spec.cell, x * spec.cell:(x + 1) * spec.cell].reshape(-1, 3)
                k = labels[j, cell]
                if k >= 0:  # the object's colour covers a good part of its cell
                    colour = np.array(COLOURS[layout["objects"][k]["colour"]])
                    near = np.abs(patch.astype(int) - colour).max(axis=1) < 60
                    assert near.mean() > 0.2


def test_each_question_needs_a_different_object(tiny_world):
    items = load_items(tiny_world / "train.json")
    by_video = {}
    for it in items:
        by_video.setdefault(it["path"], []).append(it["target_object"])
    assert all(sorted(v) == list(range(WorldSpec().objects_per_video)) for v in by_video.values())


def test_missing_field_is_one_clear_line(tmp_path, tiny_world):
    items = load_items(tiny_world / "val.json")
    del items[1]["solution"]
    (tmp_path / "bad.json").write_text(json.dumps(items))
    with pytest.raises(KitInputError, match=r"bad.json: item 1 .* lacks field\(s\) solution"):
        load_items(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(KitInputError, match="broken.json: not valid JSON"):
        load_items(tmp_path / "broken.json")
