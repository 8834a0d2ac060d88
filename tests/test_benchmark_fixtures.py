"""The dry-run benchmark fixtures (the four paper benchmarks in their real layouts, real MP4s) round-trip through the
loaders; the data check finds nothing wrong with them and one line per problem once they are broken; benchmark
videos are read as the release reads them, a short video with repeated frames."""
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cacovid_lib.data.benchmark_fixtures import COLOURS, write_benchmark_fixtures
from cacovid_lib.data.benchmarks import BENCHMARKS, check_benchmark_data, read_benchmark_video
from cacovid_lib.data.schema import answer_letter, option_texts
from cacovid_lib.io_utils import KitInputError

NUM_FRAMES = 8
PAPER_BENCHMARKS = {"longvideobench", "mlvu_dev", "mlvu_test", "videomme"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """layout -> (root, the `benchmarks:` block, seconds it took to write)."""
    out = {}
    for layout in ("official", "lmms_eval"):
        root = tmp_path_factory.mktemp(layout)
        start = time.perf_counter()
        block = write_benchmark_fixtures(root, items_per_benchmark=3, num_frames=NUM_FRAMES, size=64, layout=layout)
        out[layout] = root, block, time.perf_counter() - start
    return out


def load(block: dict, name: str) -> list[dict]:
    return BENCHMARKS[name](block[name]["annotations"], block[name]["video_root"], check_videos=True)


def square_colour(frames: np.ndarray) -> str:
    """The name of the colour nearest the bright pixels (the square; the noise is dim)."""
    bright = frames[frames.max(axis=-1) > 100]
    mean = bright.reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: np.abs(np.array(COLOURS[name]) - mean).sum())


def copy_of(written, tmp_path) -> tuple[Path, dict]:
    """A copy of the official fixtures to break, and its `benchmarks:` block."""
    root, block, _ = written["official"]
    shutil.copytree(root, tmp_path / "data")
    return tmp_path / "data", json.loads(json.dumps(block).replace(str(root), str(tmp_path / "data")))


# ---- writing and round-tripping -----------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["official", "lmms_eval"])
def test_fixtures_round_trip_with_answers_that_match_the_pixels(written, layout):
    _, block, seconds = written[layout]
    assert set(block) == PAPER_BENCHMARKS
    assert seconds < 10  # about 0.1 s on a free core; the bound leaves room for a busy machine
    assert check_benchmark_data(block, NUM_FRAMES) == []
    for name in PAPER_BENCHMARKS:
        items = load(block, name)
        assert len(items) == 3 and {it["benchmark"] for it in items} == {name}
        assert len({it["problem_id"] for it in items}) == 3
        for item in items:
            frames = read_benchmark_video(item["path"], NUM_FRAMES)
            assert frames.shape == (NUM_FRAMES, 64, 64, 3) and frames.dtype == np.uint8
            right = option_texts(item)["ABCDEF".index(answer_letter(item))]
            assert right.rstrip(".").lower() == square_colour(frames), (name, item["problem_id"])


def test_the_official_layout_is_the_published_one(written):
    root, block, _ = written["official"]
    assert block["longvideobench"] == {"annotations": str(root / "LongVideoBench" / "lvb_val.json"),
                                       "video_root": str(root / "LongVideoBench" / "videos")}
    assert block["mlvu_dev"] == {"annotations": str(root / "MLVU" / "json"), "video_root": str(root / "MLVU" / "video")}
    assert block["mlvu_test"] == {"annotations": str(root / "MLVU_Test" / "test-ground-truth" / "test_mcq_gt.json"),
                                  "video_root": str(root / "MLVU_Test" / "video")}
    assert block["videomme"] == {"annotations": str(root / "Video-MME" / "videomme" / "test-00000-of-00001.parquet"),
                                 "video_root": str(root / "Video-MME" / "data")}
    lvb = json.loads((root / "LongVideoBench" / "lvb_val.json").read_text())[0]
    assert {"video_id", "question", "candidates", "correct_choice", "id", "video_path", "duration_group",
            "question_category", "duration"} <= set(lvb)
    assert sorted(p.name for p in (root / "MLVU" / "json").iterdir()) == [
        "1_plotQA.json", "2_needle.json", "3_ego.json", "8_sub_scene.json", "9_summary.json"]
    needle = json.loads((root / "MLVU" / "json" / "2_needle.json").read_text())[0]
    assert needle["question_type"] == "findNeedle" and needle["answer"] in needle["candidates"]
    assert (root / "MLVU" / "video" / "2_needle" / needle["video"]).is_file()
    published = json.loads((root / "MLVU_Test" / "test_question.json").read_text())
    assert all("answer" not in r and len(r["candidates"]) == 6 for r in published)  # the answers are withheld there
    # the three tasks the fixtures ask (each folder name, task name and option count as in the real data)
    assert [it["category"] for it in load(block, "mlvu_dev")] == ["plotQA", "needle", "ego"]
    assert [it["category"] for it in load(block, "mlvu_test")] == ["anomaly_reco", "sportsQA", "order"]
    assert [it["problem_id"] for it in load(block, "videomme")] == ["001-1", "001-2", "002-1"]


def test_the_lmms_eval_layout_is_the_copy_the_release_reads(written):
    import pandas as pd

    root, block, _ = written["lmms_eval"]
    row = pd.read_parquet(block["mlvu_dev"]["annotations"]).iloc[0]
    assert row["question"].endswith("\n") and row["answer"] in "ABCD"
    item = load(block, "mlvu_dev")[0]
    assert item["prompt"] == row["question"] + "\nOnly give the best option.\nBest option: ("
    lvb = pd.read_parquet(block["longvideobench"]["annotations"])
    assert "candidates" not in lvb and lvb["option4"][0] == "N/A" != lvb["option4"][1]  # 4 options, then 5
    assert (Path(block["mlvu_test"]["video_root"]) / load(block, "mlvu_test")[0]["meta"]["video_name"]).is_file()


def test_the_fixtures_are_deterministic(written, tmp_path):
    def digest(folder: Path) -> dict:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    root, _, _ = written["official"]
    write_benchmark_fixtures(tmp_path, items_per_benchmark=3, num_frames=NUM_FRAMES, size=64)
    assert digest(tmp_path) == digest(root)


def test_bad_fixture_arguments():
    with pytest.raises(KitInputError, match="layout 'hf': expected one of official, lmms_eval"):
        write_benchmark_fixtures("/nonexistent", layout="hf")
    with pytest.raises(KitInputError, match="num_frames: 1 must be a whole number, at least 2"):
        write_benchmark_fixtures("/nonexistent", num_frames=1)
    with pytest.raises(KitInputError, match="size: 33 must be even"):
        write_benchmark_fixtures("/nonexistent", size=33)


# ---- reading benchmark videos as the release does ------------------------------------------------------
def test_a_short_video_repeats_frames_as_the_release(written):
    _, block, _ = written["official"]
    item = load(block, "longvideobench")[-1]  # the last video of each benchmark is shorter than NUM_FRAMES
    import decord

    total = len(decord.VideoReader(item["path"], num_threads=1))
    assert total == NUM_FRAMES // 2
    frames = read_benchmark_video(item["path"], NUM_FRAMES)
    # the release's np.linspace(0, total - 1, num_frames, dtype=int): [0, 0, 0, 1, 1, 2, 2, 3]
    indices = np.linspace(0, total - 1, NUM_FRAMES, dtype=int)
    assert list(indices) == [0, 0, 0, 1, 1, 2, 2, 3]
    for i in range(1, NUM_FRAMES):
        assert np.array_equal(frames[i], frames[i - 1]) == (indices[i] == indices[i - 1])
    whole = read_benchmark_video(item["path"], total)
    assert np.array_equal(frames, whole[indices])


def test_read_benchmark_video_errors_are_one_line(tmp_path, written):
    with pytest.raises(KitInputError, match="nope.mp4: video file not found"):
        read_benchmark_video(tmp_path / "nope.mp4", NUM_FRAMES)
    good = Path(load(written["official"][1], "videomme")[0]["path"]).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[:300])
    with pytest.raises(KitInputError, match="cut.mp4: cannot decode video") as err:
        read_benchmark_video(tmp_path / "cut.mp4", NUM_FRAMES)
    assert "\n" not in str(err.value)
    with pytest.raises(KitInputError, match="num_frames: 0 must be a whole number, at least 1"):
        read_benchmark_video(tmp_path / "cut.mp4", 0)


# ---- checking a user's data folder ---------------------------------------------------------------------
def test_the_check_names_each_problem_in_one_line(written, tmp_path):
    root, block = copy_of(written, tmp_path)
    lvb = Path(block["longvideobench"]["annotations"])
    records = json.loads(lvb.read_text())
    records[1]["correct_choise"] = records[1].pop("correct_choice")  # a misspelled field
    lvb.write_text(json.dumps(records))
    videos = Path(block["longvideobench"]["video_root"])
    (videos / "lvbFixture02.mp4").write_bytes((videos / "lvbFixture02.mp4").read_bytes()[:300])  # cut off
    (videos / "lvbFixture00.mp4").unlink()  # removed
    gt = Path(block["mlvu_test"]["annotations"])
    records = json.loads(gt.read_text())
    records[2]["answer"] = "mauve"  # not among the candidates
    records[1]["question_id"] = records[0]["question_id"]  # a duplicate id
    gt.write_text(json.dumps(records))
    problems = check_benchmark_data(block, NUM_FRAMES)
    assert problems == [
        f"{lvb}: item 1 has no field 'correct_choice' (is this a LongVideoBench annotation file?)",
        f"{lvb}: item lvbFixture00_0: video not found: {videos / 'lvbFixture00.mp4'}",
        f"{lvb}: item lvbFixture02_0: {videos / 'lvbFixture02.mp4'}: cannot decode video "
        f"({problems[2].split('cannot decode video (')[1][:-1]})",
        f"{gt}: item 2 answer 'mauve' is neither one of its candidates nor an option letter",
        f"{gt}: item AR_0: duplicate problem id (2 items have it)",
    ]
    assert all("\n" not in p for p in problems)


def test_the_check_of_settings_files_and_withheld_answers(written, tmp_path):
    root, block = copy_of(written, tmp_path)
    block["videomme"]["annotations"] = "/path/to/Video-MME/videomme/test-00000-of-00001.parquet"
    block["mlvu_dev"]["video_root"] = str(root / "nowhere")
    block["mlvu_test"]["annotations"] = str(root / "MLVU_Test" / "test_question.json")
    (Path(block["longvideobench"]["annotations"])).unlink()
    assert check_benchmark_data(block, NUM_FRAMES) == [
        f"{root / 'LongVideoBench' / 'lvb_val.json'}: file not found",
        f"{root / 'nowhere'}: video folder not found (benchmarks.mlvu_dev.video_root)",
        f"{root / 'MLVU_Test' / 'test_question.json'}: MLVU test answers are withheld: no item has an 'answer' (as in "
        f"MLVU_Test's test_question.json, the questions only); give test-ground-truth/test_mcq_gt.json "
        f"(MLVU/MLVU_Test) or lmms-eval's copy (sy1998/MLVU_Test), else MLVU test is not reproducible without the "
        f"answers",
        "/path/to/Video-MME/videomme/test-00000-of-00001.parquet: benchmarks.videomme.annotations is still a "
        "placeholder; set it to where the data is",
    ]
    assert check_benchmark_data({"mlvu": {}, "videomme": {"annotations": "x.parquet"}}, NUM_FRAMES) == [
        "benchmarks.mlvu: not a benchmark; valid: longvideobench, mlvu_dev, mlvu_test, mvbench, videomme",
        "benchmarks.videomme.video_root: missing (the benchmark's video folder)",
    ]
    assert check_benchmark_data(block, 0) == ["num_frames: 0 must be a whole number, at least 1"]


def test_the_check_says_once_when_no_video_is_there(written, tmp_path):
    root, block = copy_of(written, tmp_path)
    (root / "empty").mkdir()
    block["videomme"]["video_root"] = str(root / "empty")
    [line] = check_benchmark_data(block, NUM_FRAMES)
    assert line == (f"{block['videomme']['annotations']}: none of its 2 videos is in {root / 'empty'} (the first "
                    f"expected: {(root / 'empty' / 'vmeFixture0.mp4').resolve()}); is video_root the benchmark's "
                    f"video folder?")
