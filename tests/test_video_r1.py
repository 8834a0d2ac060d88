"""Video-R1 training JSON: load + filter against a media root, read media, prompts, filtered write-back, errors."""
import json

import numpy as np
import pytest
from PIL import Image

from cacovid_lib.data.video_io import write_video
from cacovid_lib.data.video_r1 import TYPE_TEMPLATE, load_video_r1, question_prompt, read_media, write_filtered
from cacovid_lib.io_utils import KitInputError


def _item(pid, problem_type, data_type, path, solution, options=()):
    return {"problem_id": pid, "problem": f"Question {pid}?", "data_type": data_type, "problem_type": problem_type,
            "options": list(options), "process": "<think>...</think>", "solution": f"<answer>{solution}</answer>",
            "path": path, "data_source": "fixture"}


ITEMS = [
    _item(1, "multiple choice", "video", "./videos/a.mp4", "B", ["A. red", "B. blue", "C. green", "D. cyan"]),
    _item(2, "numerical", "video", "./videos/b.mp4", "3"),
    _item(3, "OCR", "image", "./images/sign.png", "STOP HERE"),
    _item(4, "free-form", "video", "./videos/a.mp4", "a ball rolls left"),
    _item(5, "regression", "image", "./images/sign.png", "12.5"),
    _item(6, "multiple choice", "image", "./images/sign.png", "A", ["A. stop", "B. go"]),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A media root with two tiny MP4s and one PNG, and the Video-R1 JSON describing them."""
    root = tmp_path_factory.mktemp("Video-R1-data")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_video(root / f"videos/{name}.mp4", rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))
    (root / "images").mkdir()
    image = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "images/sign.png")
    json_file = root / "train.json"
    json_file.write_text(json.dumps(ITEMS))
    return root, json_file, image


def _write(tmp_path, items) -> str:
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    return path


def test_load_filter_and_check_media(media):
    root, json_file, _ = media
    items = load_video_r1(json_file, root, check_media=True)
    assert [it["problem_id"] for it in items] == [1, 2, 3, 4, 5, 6]
    assert items[0]["media_path"] == str(root / "videos/a.mp4")  # "./" normalised away, absolute
    assert all({k: v for k, v in it.items() if k != "media_path"} == raw for it, raw in zip(items, ITEMS))
    assert [it["problem_id"] for it in load_video_r1(json_file, root, data_types=("video",))] == [1, 2, 4]
    assert [it["problem_id"] for it in load_video_r1(json_file, root, data_types="video")] == [1, 2, 4]
    assert [it["problem_id"] for it in load_video_r1(json_file, root, problem_types=["OCR", "regression"])] == [3, 5]
    assert [it["problem_id"] for it in load_video_r1(json_file, root, data_types=["image"], limit=2)] == [3, 5]


def test_read_media_video_and_image(media):
    root, json_file, image = media
    items = {it["problem_id"]: it for it in load_video_r1(json_file, root)}
    video = read_media(items[1], 4)
    assert video.shape == (4, 32, 32, 3) and video.dtype == np.uint8
    frames = read_media(items[3], 4)
    assert frames.shape == (4, 20, 24, 3) and frames.dtype == np.uint8
    assert all(np.array_equal(f, image) for f in frames)  # the image, repeated t times


def test_question_prompt_per_type(media):
    root, json_file, _ = media
    items = load_video_r1(json_file, root)
    for item in items:
        text = question_prompt(item)
        assert text.startswith(item["problem"]) and text.endswith(TYPE_TEMPLATE[item["problem_type"]])
        assert "<think> </think>" in text
    assert question_prompt(items[0]).startswith("Question 1?Options:\nA. red\nB. blue\nC. green\nD. cyan\n\nPlease think")
    assert "Options" not in question_prompt(items[1])
    assert question_prompt(items[1], template="cacovid") == "Question 2?\n Please provide the numerical value (e.g., 42 or 3.14)."
    with pytest.raises(KitInputError, match="template 'qwen' is not one of: video-r1, cacovid"):
        question_prompt(items[1], template="qwen")


def test_write_filtered_round_trip(media, tmp_path):
    root, json_file, _ = media
    items = load_video_r1(json_file, root)
    assert write_filtered(items, tmp_path / "out/filtered.json") == len(ITEMS)
    assert json.loads((tmp_path / "out/filtered.json").read_text()) == ITEMS
    assert "media_path" in items[0]  # the caller's items are left as they were
    assert list(tmp_path.glob("out/.*")) == []  # no temporary file left behind


def test_release_field_names(media, tmp_path):
    """The release's grpo_video.py names the fields modality_type and video; those items load and write back as is."""
    root, _, _ = media
    release = [{"problem": "How many? Options: A. 1 B. 2", "solution": "<answer>A</answer>", "modality_type": "video",
                "problem_type": "multiple choice", "video": "videos/b.mp4"}]
    items = load_video_r1(_write(tmp_path, release), root, check_media=True)
    assert items[0]["media_path"] == str(root / "videos/b.mp4")
    assert read_media(items[0], 2).shape == (2, 32, 32, 3)
    write_filtered(items, tmp_path / "kept.json")
    assert json.loads((tmp_path / "kept.json").read_text()) == release


def _without(key):
    return [ITEMS[0], {k: v for k, v in ITEMS[1].items() if k != key}]


@pytest.mark.parametrize("content, expected", [
    (None, r"nope\.json: file not found"),
    ("[{\"problem\": ", r"items\.json: not valid JSON"),
    ({"problem": "x"}, r"items\.json: expected a JSON list of items, got dict"),
    (_without("solution"), r"items\.json: item 1 \(2\): lacks field 'solution'"),
    ([dict(ITEMS[0], problem_type="yes/no")],
     r"item 0 \(1\): problem_type 'yes/no' is not one of: multiple choice, numerical, OCR, free-form, regression"),
    ([dict(ITEMS[0], data_type="audio")], r"item 0 \(1\): data_type 'audio' is not one of: video, image"),
    ([ITEMS[0], dict(ITEMS[1], path="./videos/gone.mp4"), dict(ITEMS[3], path="./videos/gone2.mp4")],
     r"items\.json: 2 of 3 media files missing under .*, first: .*videos/gone\.mp4$"),
])
def test_bad_inputs_are_one_line(media, tmp_path, content, expected):
    root, _, _ = media
    if content is None:
        path = tmp_path / "nope.json"
    elif isinstance(content, str):  # raw text, e.g. malformed JSON
        path = tmp_path / "items.json"
        path.write_text(content)
    else:
        path = _write(tmp_path, content)
    with pytest.raises(KitInputError, match=expected) as err:
        load_video_r1(path, root, check_media=True)
    assert "\n" not in str(err.value)


def test_bad_arguments_and_media(media, tmp_path):
    root, json_file, _ = media
    with pytest.raises(KitInputError, match="problem_types: 'mcq' is not one of: multiple choice"):
        load_video_r1(json_file, root, problem_types=["mcq"])
    with pytest.raises(KitInputError, match="media root folder not found"):
        load_video_r1(json_file, tmp_path / "no_root")
    (tmp_path / "images").mkdir()
    (tmp_path / "images/sign.png").write_bytes(b"not a png")
    broken = load_video_r1(json_file, tmp_path, data_types=["image"])[0]
    with pytest.raises(KitInputError, match=r"sign\.png: cannot read image") as err:
        read_media(broken, 4)
    assert "\n" not in str(err.value)
    with pytest.raises(KitInputError, match=r"b\.mp4: video file not found"):
        read_media(load_video_r1(json_file, tmp_path, problem_types=["numerical"])[0], 4)
    with pytest.raises(KitInputError, match="no media_path; load items with load_video_r1"):
        read_media(ITEMS[0], 4)


@pytest.mark.parametrize("path", ["../../etc/passwd", "./videos/../../outside.mp4", "/etc/passwd"])
@pytest.mark.parametrize("check_media", [False, True])
def test_a_media_path_leaving_the_media_root_is_refused(media, tmp_path, path, check_media):
    root, _, _ = media
    json_file = _write(tmp_path, ITEMS[:1] + [_item(7, "numerical", "video", path, "3")])
    with pytest.raises(KitInputError, match=r"item 1 \(7\): media path .* leaves the media root") as err:
        load_video_r1(json_file, root, check_media=check_media)
    assert "\n" not in str(err.value)


def test_an_absolute_media_path_inside_the_media_root_is_accepted(media, tmp_path):
    root, _, _ = media
    json_file = _write(tmp_path, [_item(8, "numerical", "video", str(root / "videos/b.mp4"), "3")])
    assert load_video_r1(json_file, root, check_media=True)[0]["media_path"] == str(root / "videos/b.mp4")
