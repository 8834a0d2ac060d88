"""The embedded world: Video-R1 format, determinism, balance, well-posed questions, per-token labels that match
the pixels, splits seeded by their names, and a world that must fit the video LLM it is loaded for."""
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from cacovid_lib.data.schema import VIDEO_R1_FIELDS, answer_letter, load_items, option_texts
from cacovid_lib.data.video_io import read_video
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.world import COLOURS, QUESTION_TYPES, WorldSpec, build_world, make_questions, render_video
from cacovid_lib.io_utils import KitInputError


def test_items_are_video_r1_multiple_choice(tiny_world):
    items = load_items(tiny_world / "train.json")
    assert len(items) == 12 * WorldSpec().questions_per_video
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
    build_world(tmp_path / "other", seed=2, num_videos={"train": 12}, workers=1)
    assert (tmp_path / "other/train.json").read_text() != (tmp_path / "train.json").read_text()


def test_a_split_rendered_alone_is_the_split_rendered_with_the_others(tmp_path, tiny_world):
    build_world(tmp_path, seed=1, num_videos={"test": 4}, workers=1)  # the fixture rendered train, val and test
    assert (tmp_path / "test.json").read_text() == (tiny_world / "test.json").read_text()
    assert (tmp_path / "test_layout.json").read_text() == (tiny_world / "test_layout.json").read_text()
    for i in range(4):
        assert (tmp_path / f"videos/test_{i:05d}.mp4").read_bytes() == (tiny_world / f"videos/test_{i:05d}.mp4").read_bytes()
    train = json.loads((tiny_world / "train_layout.json").read_text())["videos/train_00000.mp4"]
    test = json.loads((tiny_world / "test_layout.json").read_text())["videos/test_00000.mp4"]
    assert train != test  # each split its own stream


def test_answers_are_balanced_so_text_alone_is_at_chance():
    rng, spec, items = np.random.default_rng(3), WorldSpec(), []
    for i in range(150):
        _, layout = render_video(rng, spec)
        items += make_questions(rng, f"v{i}", "v.mp4", layout, spec)
    letters = np.array(["ABCD".index(answer_letter(it)) for it in items])
    assert np.all(np.abs(np.bincount(letters, minlength=4) / len(letters) - 0.25) < 0.05)
    types = np.array([QUESTION_TYPES.index(it["question_type"]) for it in items])
    assert np.all(np.abs(np.bincount(types, minlength=3) / len(types) - 1 / 3) < 0.06)  # drawn uniformly


def test_token_labels_point_at_the_object_pixels(tiny_world):
    split = load_split(tiny_world, "test", 8)
    spec = WorldSpec()
    assert split.object_labels.shape == (4, 8, spec.grid * spec.grid)
    covered = []
    for v, layout in enumerate(split.layouts):
        for j, cell in zip(*np.nonzero(split.object_labels[v] >= 0)):
            y, x = divmod(cell, spec.grid)
            patch = split.frames[v, j, y * spec.cell:(y + 1) * spec.cell, x * spec.cell:(x + 1) * spec.cell].reshape(-1, 3)
            colour = np.array(COLOURS[layout["objects"][split.object_labels[v, j, cell]]["colour"]])
            covered.append((np.abs(patch.astype(int) - colour).max(axis=1) < 60).mean())
    # the object's colour covers part of its cell: a thin star blurred by the video's chroma subsampling keeps a
    # few percent, a wrong cell (background, clutter and the other objects in other colours) none
    assert min(covered) > 0.03 and np.mean(covered) > 0.2


def test_questions_are_well_posed_each_about_another_object(tiny_world):
    layouts = json.loads((tiny_world / "train_layout.json").read_text())
    items = load_items(tiny_world / "train.json")
    by_video = {}
    for item in items:
        objects = layouts[item["path"]]["objects"]
        assert len({o["colour"] for o in objects}) == len({o["shape"] for o in objects}) == len(objects) == 6
        target = objects[item["target_object"]]
        correct = option_texts(item)["ABCD".index(answer_letter(item))]
        assert correct.split() == [target["colour"], target["shape"]]
        by_video.setdefault(item["path"], []).append(item["target_object"])
    assert all(len(set(v)) == len(v) == WorldSpec().questions_per_video for v in by_video.values())


def test_videos_have_brief_objects_and_words_the_tokenizer_knows(tiny_world):
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.embedded.world_stats import visible_frames

    spec = WorldSpec(**json.loads((tiny_world / "world_spec.json").read_text()))
    layouts = json.loads((tiny_world / "train_layout.json").read_text())
    seen = [visible_frames(o["cells"], 8, spec) for lay in layouts.values() for o in lay["objects"]]
    assert min(seen) >= 1 and sum(s <= 2 for s in seen) == spec.brief_objects * len(layouts)
    tokenizer = build_tokenizer()
    for item in load_items(tiny_world / "train.json"):
        text = item["problem"] + " " + " ".join(option_texts(item))
        assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False).input_ids


def test_world_spec_json_holds_every_field_and_bad_specs_fail(tiny_world):
    assert WorldSpec(**json.loads((tiny_world / "world_spec.json").read_text())) == WorldSpec()
    assert WorldSpec().shapes[-1] == "star" and len(WorldSpec().shapes) == 6  # six objects, each its own shape
    with pytest.raises(ValueError, match="objects_per_video: 7; unique attributes allow at most 6"):
        WorldSpec(objects_per_video=7)
    with pytest.raises(ValueError, match="questions_per_video: 5; each question asks about another object"):
        WorldSpec(objects_per_video=4, questions_per_video=5)
    with pytest.raises(ValueError, match="frame_size: 96 is not a multiple of grid"):
        WorldSpec(grid=5)


def test_a_world_spec_json_of_unknown_fields_is_one_clear_line(tmp_path):
    from cacovid_lib.embedded.world import read_world_spec

    (tmp_path / "world_spec.json").write_text(json.dumps({**WorldSpec().to_json(), "background": "flat"}))
    with pytest.raises(KitInputError, match=r"world_spec.json: unknown WorldSpec field\(s\) background; render the world again"):
        read_world_spec(tmp_path)
    with pytest.raises(KitInputError, match="no world_spec.json"):
        read_world_spec(tmp_path / "missing")


def test_the_model_grid_must_match_the_world_grid():
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, check_matches_world

    check_matches_world(SmallVLMConfig(), WorldSpec())
    check_matches_world(SmallVLMConfig(image_size=64), replace(WorldSpec(), frame_size=64, grid=4))
    with pytest.raises(KitInputError, match="set image_size 96, patch_size 6"):
        check_matches_world(SmallVLMConfig(), WorldSpec(grid=8))


def test_a_world_loaded_for_a_video_llm_must_fit_it(tiny_world):
    smaller = SimpleNamespace(grid=(8, 4, 4), image_size=64)  # a video LLM of 64-pixel frames, 4 x 4 tokens each
    with pytest.raises(KitInputError, match=r"96-pixel frames of 6x6 cells, 8 frames; the video LLM takes 64-pixel "
                                            r"frames and makes 8 x 4x4 video tokens"):
        load_split(tiny_world, "val", 8, video_llm=smaller)
    fitting = SimpleNamespace(grid=(8, 6, 6), image_size=96)
    assert load_split(tiny_world, "val", 8, video_llm=fitting).object_labels.shape == (3, 8, 36)
