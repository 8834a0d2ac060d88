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


# ---- the busy world (WorldSpec knobs; the defaults above are the original world) ---------------------------
@pytest.fixture(scope="module")
def busy_world(tmp_path_factory):
    from cacovid_lib.embedded.world import busy_world_spec

    root = tmp_path_factory.mktemp("busy_world")
    build_world(root, seed=2, num_videos={"train": 30, "test": 6}, spec=busy_world_spec(8), workers=2)
    return root


def test_original_spec_writes_the_original_world_spec_json():
    assert list(WorldSpec().to_json()) == ["frame_size", "grid", "num_rendered_frames", "objects_per_video",
                                           "clutter_per_video", "min_visible", "max_visible"]
    with pytest.raises(ValueError, match="question_types: 'when'"):
        WorldSpec(question_types=("when",), questions_per_video=2)


def test_busy_world_labels_point_at_the_object_pixels(busy_world):
    split = load_split(busy_world, "test", 8)
    spec = WorldSpec(**json.loads((busy_world / "world_spec.json").read_text()))
    assert split.object_labels.shape == (6, 8, 64)
    for v, layout in enumerate(split.layouts):
        for j, cell in zip(*np.nonzero(split.object_labels[v] >= 0)):
            y, x = divmod(cell, spec.grid)
            patch = split.frames[v, j, y * spec.cell:(y + 1) * spec.cell, x * spec.cell:(x + 1) * spec.cell].reshape(-1, 3)
            colour = np.array(COLOURS[layout["objects"][split.object_labels[v, j, cell]]["colour"]])
            assert (np.abs(patch.astype(int) - colour).max(axis=1) < 60).mean() > 0.2


def test_busy_world_questions_are_well_posed(busy_world):
    from cacovid_lib.embedded.world import COUNT_WORDS

    layouts = json.loads((busy_world / "train_layout.json").read_text())
    items = load_items(busy_world / "train.json")
    assert len(items) == 30 * 4
    for item in items:
        objects = layouts[item["path"]]["objects"]
        correct = option_texts(item)["ABCD".index(answer_letter(item))]
        qtype = item["question_type"]
        if qtype.startswith("count"):
            key = "colour" if qtype == "count_colour" else "shape"
            value = item["problem"].split()[2]  # "How many <value> objects are there?"
            assert correct == COUNT_WORDS[sum(o[key] == value for o in objects)]
            continue
        target = objects[item["target_object"]]
        assert correct.split() == [target["colour"], target["shape"]]
        if qtype == "colour_of_shape":  # asked only about a shape no other object has
            assert sum(o["shape"] == target["shape"] for o in objects) == 1
        if qtype == "shape_of_colour":
            assert sum(o["colour"] == target["colour"] for o in objects) == 1


def test_busy_world_has_brief_objects_and_words_the_tokenizer_knows(busy_world):
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.embedded.world_stats import visible_frames

    spec = WorldSpec(**json.loads((busy_world / "world_spec.json").read_text()))
    layouts = json.loads((busy_world / "train_layout.json").read_text())
    seen = [visible_frames(o["cells"], 8, spec) for lay in layouts.values() for o in lay["objects"]]
    assert min(seen) >= 1 and sum(s <= 2 for s in seen) == 2 * len(layouts)  # the 2 brief objects of each video
    tokenizer = build_tokenizer(spec)
    for item in load_items(busy_world / "train.json"):
        text = item["problem"] + " " + " ".join(option_texts(item))
        assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False).input_ids
    assert len(build_tokenizer()) < len(tokenizer)  # the original vocabulary is unchanged


def test_the_model_grid_must_match_the_world_grid():
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, check_matches_world
    from cacovid_lib.embedded.world import busy_world_spec

    check_matches_world(SmallVLMConfig(), WorldSpec())
    check_matches_world(SmallVLMConfig(image_size=96, patch_size=8), busy_world_spec(6))
    with pytest.raises(KitInputError, match="set image_size 96, patch_size 6"):
        check_matches_world(SmallVLMConfig(image_size=96, patch_size=8), busy_world_spec(8))


def test_appears_first_answer_is_the_earliest_and_impossible_specs_fail(tmp_path):
    from dataclasses import replace

    from cacovid_lib.embedded.world import busy_world_spec, first_sampled_frame

    spec = replace(busy_world_spec(6), question_types=("which_object", "appears_first"), questions_per_video=2)
    build_world(tmp_path, seed=0, num_videos={"train": 20}, spec=spec, workers=1)
    layouts = json.loads((tmp_path / "train_layout.json").read_text())
    firsts = [it for it in load_items(tmp_path / "train.json") if it["question_type"] == "appears_first"]
    assert firsts
    for item in firsts:
        objects = layouts[item["path"]]["objects"]
        seen = [first_sampled_frame(objects[k]["cells"], spec) for k in item["target_objects"]]
        assert len(set(seen)) == 4 and seen[0] == min(seen) and item["target_object"] == item["target_objects"][0]
        correct = option_texts(item)["ABCD".index(answer_letter(item))]
        assert correct == " ".join(objects[item["target_object"]][a] for a in ("colour", "shape"))
    with pytest.raises(ValueError, match="questions_per_video: 2 questions"):
        build_world(tmp_path / "bad", seed=0, num_videos={"train": 1},
                    spec=replace(spec, question_types=("colour_of_shape",)), workers=1)


def test_question_weights_set_the_mix_of_question_types():
    from collections import Counter

    from dataclasses import replace

    from cacovid_lib.embedded.world import busy_questions, busy_world_spec, render_video

    rng = np.random.default_rng(0)
    spec = replace(busy_world_spec(4), frame_size=64, question_weights=(1, 1, 1, 0.25, 0.25))
    counts = Counter()
    for i in range(60):
        _, layout = render_video(rng, spec)
        counts.update(it["question_type"] for it in busy_questions(rng, f"v{i}", "v.mp4", layout, spec))
    counting = (counts["count_colour"] + counts["count_shape"]) / sum(counts.values())
    assert 0.05 < counting < 0.25  # weights 0.5 of 3.5 -> about 14%; equal weights would give about 40%
    with pytest.raises(ValueError, match="question_weights: .* one positive weight per question type"):
        replace(spec, question_weights=(1, 1))


def test_six_objects_with_unique_attributes_use_a_sixth_shape_and_well_posed_options(tmp_path):
    from dataclasses import replace

    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.embedded.world import EXTRA_SHAPES, QUESTION_TYPES, busy_world_spec

    spec = replace(busy_world_spec(4), frame_size=64, attributes="unique", question_types=QUESTION_TYPES)
    assert spec.shapes[-1] == "star" and len(spec.shapes) == 6
    build_world(tmp_path, seed=1, num_videos={"test": 8}, spec=spec, workers=1)
    layouts = json.loads((tmp_path / "test_layout.json").read_text())
    vocab = build_tokenizer(spec).get_vocab()
    for layout in layouts.values():
        objects = layout["objects"]
        assert len({o["colour"] for o in objects}) == len({o["shape"] for o in objects}) == 6
    items = load_items(tmp_path / "test.json")
    assert len(items) == 8 * 4 and set(EXTRA_SHAPES) <= set(vocab)
    for item in items:
        texts = option_texts(item)
        assert len(set(texts)) == 4 and all(w in vocab for t in texts for w in t.split())
    with pytest.raises(ValueError, match="objects_per_video: 7; unique attributes allow at most 6"):
        replace(spec, objects_per_video=7)
