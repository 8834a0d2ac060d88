"""Benchmark loaders (VideoMME, MLVU, LongVideoBench, MVBench): items, lmms-eval prompts and answer parsing,
accuracy per category, and one-line errors for bad annotation files. Fixtures are tiny files in each
benchmark's published schema, written here."""
import importlib.util
import json
from pathlib import Path

import pytest

from cacovid_lib.data.benchmarks import BENCHMARKS, accuracy_by_category, parse_answer
from cacovid_lib.data.schema import VIDEO_R1_FIELDS, answer_letter
from cacovid_lib.io_utils import KitInputError

OPTIONS4 = ["A. x", "B. x", "C. x", "D. x"]


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def videomme_record(n: int, duration: str, answer: str) -> dict:
    # a row of lmms-lab/Video-MME's test parquet, as JSON
    return {"video_id": f"00{n}", "duration": duration, "domain": "Knowledge", "sub_category": "Astronomy",
            "url": "https://www.youtube.com/watch?v=x", "videoID": f"vid{n}", "question_id": f"00{n}-1",
            "task_type": "Counting Problem", "question": f"How many stars in video {n}?",
            "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": answer}


@pytest.fixture
def videomme(tmp_path):
    records = [videomme_record(1, "short", "B"), videomme_record(2, "short", "C"), videomme_record(3, "medium", "A")]
    for n in (1, 2, 3):
        touch(tmp_path / "data" / f"vid{n}.mp4")
    return write_json(tmp_path / "videomme.json", records), tmp_path / "data"


def check_kit_format(items):
    for item in items:
        assert set(VIDEO_R1_FIELDS) <= set(item)
        assert item["data_type"] == "video" and item["problem_type"] == "multiple choice"
        assert Path(item["path"]).is_absolute()
        assert [o[:3] for o in item["options"]] == [f"{c}. " for c in "ABCDE"[:len(item["options"])]]


# ---- VideoMME ----------------------------------------------------------------------------------
def test_videomme_items_and_prompt(videomme):
    annotation, video_root = videomme
    items = BENCHMARKS["videomme"](annotation, video_root, check_videos=True)
    check_kit_format(items)
    assert [it["category"] for it in items] == ["short", "short", "medium"]
    assert [answer_letter(it) for it in items] == ["B", "C", "A"]
    first = items[0]
    assert first["problem_id"] == "001-1" and first["benchmark"] == "videomme"
    assert first["problem"] == "How many stars in video 1?"
    assert first["options"] == ["A. One.", "B. Two.", "C. Three.", "D. Four."]
    assert first["path"] == str((video_root / "vid1.mp4").resolve())
    assert first["meta"]["task_type"] == "Counting Problem"
    assert first["prompt"] == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many stars in video 1?\nA. One.\nB. Two.\nC. Three.\nD. Four.\n\n"
        "Answer with the option's letter from the given choices directly.")


def test_videomme_bad_inputs(tmp_path, videomme):
    annotation, video_root = videomme
    with pytest.raises(KitInputError, match="nothing.json: file not found"):
        BENCHMARKS["videomme"](tmp_path / "nothing.json", video_root)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(KitInputError, match="broken.json: not valid JSON"):
        BENCHMARKS["videomme"](tmp_path / "broken.json", video_root)
    records = json.loads(annotation.read_text()) + [videomme_record(4, "long", "A")]
    del records[3]["options"]
    with pytest.raises(KitInputError) as err:
        BENCHMARKS["videomme"](write_json(tmp_path / "bad" / "videomme.json", records), video_root)
    assert "videomme.json: item 3 has no field 'options' (is this a VideoMME annotation file?)" in str(err.value)
    assert "\n" not in str(err.value)
    records[3]["options"], records[3]["answer"] = ["A. One.", "B. Two."], "D"
    with pytest.raises(KitInputError, match="item 3 answer 'D' is not one of its option letters AB"):
        BENCHMARKS["videomme"](write_json(tmp_path / "bad" / "videomme.json", records), video_root)
    with pytest.raises(KitInputError, match="expected a list of VideoMME items, got a JSON dict"):
        BENCHMARKS["videomme"](write_json(tmp_path / "dict.json", {"questions": []}), video_root)


def test_videomme_missing_videos_are_counted(videomme):
    annotation, video_root = videomme
    (video_root / "vid2.mp4").unlink()
    (video_root / "vid3.mp4").unlink()
    assert len(BENCHMARKS["videomme"](annotation, video_root)) == 3  # only checked on request
    with pytest.raises(KitInputError, match=r"2 of the 3 videos listed in .*videomme.json are missing, the first is .*vid2.mp4"):
        BENCHMARKS["videomme"](annotation, video_root, check_videos=True)


def test_videomme_parquet(tmp_path):
    fake = tmp_path / "test-00000-of-00001.parquet"
    fake.write_bytes(b"not parquet")
    has_engine = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))
    message = "not a valid parquet file" if has_engine else "reading parquet needs pyarrow"
    with pytest.raises(KitInputError, match=f"test-00000-of-00001.parquet: {message}"):
        BENCHMARKS["videomme"](fake, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")
def test_videomme_reads_the_published_parquet(tmp_path):
    import pandas as pd

    parquet = tmp_path / "test-00000-of-00001.parquet"
    pd.DataFrame([videomme_record(1, "long", "D")]).to_parquet(parquet)
    [item] = BENCHMARKS["videomme"](parquet, tmp_path)
    assert item["options"] == ["A. One.", "B. Two.", "C. Three.", "D. Four."] and answer_letter(item) == "D"


# ---- MLVU --------------------------------------------------------------------------------------
def test_mlvu_dev_published_folder(tmp_path):
    json_dir = tmp_path / "MLVU" / "json"
    write_json(json_dir / "1_plotQA.json", [
        {"video": "movie_1.mp4", "duration": 300, "question": "Who opens the door?",
         "candidates": ["a dog", "a cat", "a man", "a girl"], "answer": "a man", "question_type": "plotQA"},
        {"video": "movie_2.mp4", "duration": 200, "question": "What falls?",
         "candidates": ["a cup", "a hat", "a leaf", "a ball"], "answer": "a cup", "question_type": "plotQA"}])
    write_json(json_dir / "2_needle.json", [
        {"video": "needle_1.mp4", "duration": 400, "question": "What is in the box?",
         "candidates": ["a key", "a ring"], "answer": "a ring", "question_type": "findNeedle"}])
    write_json(json_dir / "9_summary.json", [{"video": "s.mp4", "question": "Summarise.", "answer": "text"}])
    video_root = tmp_path / "MLVU" / "video"
    touch(video_root / "1_plotQA" / "movie_1.mp4")
    items = BENCHMARKS["mlvu_dev"](json_dir, video_root)
    check_kit_format(items)
    assert [it["category"] for it in items] == ["plotQA", "plotQA", "needle"]  # summary skipped
    assert [answer_letter(it) for it in items] == ["C", "A", "B"]
    assert {it["benchmark"] for it in items} == {"mlvu_dev"}
    assert items[0]["path"] == str((video_root / "1_plotQA" / "movie_1.mp4").resolve())
    assert items[0]["options"] == ["A. a dog", "B. a cat", "C. a man", "D. a girl"]
    # the release's mlvu_doc_to_text: the question as lmms-eval's copy writes it (options as "(A) ..." lines, each
    # ending with a newline), then mlvu_dev.yaml's default post prompt
    assert items[0]["prompt"] == ("Who opens the door?\n(A) a dog\n(B) a cat\n(C) a man\n(D) a girl\n"
                                  "\nOnly give the best option.\nBest option: (")


def test_mlvu_test_lmms_eval_copy(tmp_path):
    question = "Which sport is shown?\n(A) tennis\n(B) golf\n(C) judo\n(D) polo"
    annotation = write_json(tmp_path / "mlvu_test.json", [
        {"video_name": "sports_1.mp4", "question": question, "candidates": ["tennis", "golf", "judo", "polo"],
         "answer": "B", "task_type": "sportsQA", "question_id": "SQA_0"}])
    [item] = BENCHMARKS["mlvu_test"](annotation, tmp_path / "video")
    assert item["benchmark"] == "mlvu_test" and item["category"] == "sportsQA" and item["problem_id"] == "SQA_0"
    assert item["problem"] == "Which sport is shown?" and answer_letter(item) == "B"
    assert item["options"] == ["A. tennis", "B. golf", "C. judo", "D. polo"]
    assert item["prompt"] == question + "\nOnly give the best option.\nBest option: ("
    assert item["path"] == str((tmp_path / "video" / "sports_1.mp4").resolve())


def test_mlvu_options_read_from_the_question_without_candidates(tmp_path):
    question = "How many birds?\n(A) 1\n(B) 2\n(C) 3"
    annotation = write_json(tmp_path / "mlvu.json", [{"video_name": "count/c.mp4", "question": question,
                                                      "answer": "C", "task_type": "count"}])
    [item] = BENCHMARKS["mlvu_dev"](annotation, tmp_path)
    assert item["problem"] == "How many birds?" and item["options"] == ["A. 1", "B. 2", "C. 3"]
    assert answer_letter(item) == "C" and item["prompt"] == question + "\nOnly give the best option.\nBest option: ("


def test_mlvu_bad_inputs(tmp_path):
    record = {"video": "v.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "c", "question_type": "ego"}
    with pytest.raises(KitInputError, match="mlvu.json: item 0 answer 'c' is neither one of its candidates nor an option letter"):
        BENCHMARKS["mlvu_dev"](write_json(tmp_path / "mlvu.json", [record]), tmp_path)
    del record["candidates"]
    with pytest.raises(KitInputError, match=r"item 0 has no field 'candidates' \(is this an MLVU annotation file\?\)"):
        BENCHMARKS["mlvu_dev"](write_json(tmp_path / "mlvu.json", [record]), tmp_path)
    with pytest.raises(KitInputError, match=r"empty: no MLVU dev annotations here \(expected json/<n>_<task>.json"):
        (tmp_path / "empty").mkdir()
        BENCHMARKS["mlvu_dev"](tmp_path / "empty", tmp_path)


# ---- LongVideoBench ----------------------------------------------------------------------------
def lvb_record(n: int, group: int, choice: int) -> dict:
    # an item of LongVideoBench's lvb_val.json
    return {"video_id": f"v{n}", "question": f"What happens after the {n}th cut?", "question_wo_referring_query": "",
            "candidates": ["a jump", "a fall", "a song", "a dance", "a goal"][:4], "correct_choice": choice,
            "position": [1, 2], "topic_category": "NP-News-Programs", "question_category": "E2O", "level": "L1",
            "id": f"v{n}_0", "video_path": f"v{n}.mp4", "subtitle_path": f"v{n}_en.json", "duration_group": group,
            "starting_timestamp_for_subtitles": 0, "duration": 30.0, "view_count": 1}


def test_longvideobench_items_and_prompt(tmp_path):
    hf_row = {k: v for k, v in lvb_record(3, 600, 4).items() if k != "candidates"}
    hf_row.update(option0="a", option1="b", option2="c", option3="d", option4="e")  # the HF parquet's form
    annotation = write_json(tmp_path / "lvb_val.json", [lvb_record(1, 15, 2), lvb_record(2, 600, 0), hf_row])
    items = BENCHMARKS["longvideobench"](annotation, tmp_path / "videos")
    check_kit_format(items)
    assert [it["category"] for it in items] == ["15", "600", "600"]
    assert [answer_letter(it) for it in items] == ["C", "A", "E"]
    assert items[0]["problem_id"] == "v1_0" and items[2]["options"][-1] == "E. e"
    assert items[0]["path"] == str((tmp_path / "videos" / "v1.mp4").resolve())
    assert items[0]["prompt"] == ("What happens after the 1th cut?\nA. a jump\nB. a fall\nC. a song\nD. a dance\n"
                                  "Answer with the option's letter from the given choices directly.\n")


def test_longvideobench_bad_inputs(tmp_path):
    record = lvb_record(1, 60, 7)
    with pytest.raises(KitInputError, match="item 0 correct_choice 7 is not an index into its 4 candidates"):
        BENCHMARKS["longvideobench"](write_json(tmp_path / "lvb_val.json", [record]), tmp_path)
    other = lvb_record(2, 60, 1)
    del other["correct_choice"]
    with pytest.raises(KitInputError, match=r"lvb_val.json: item 1 has no field 'correct_choice' \(is this a LongVideoBench"):
        BENCHMARKS["longvideobench"](write_json(tmp_path / "lvb_val.json", [lvb_record(1, 60, 0), other]), tmp_path)
    del record["correct_choice"]  # as in lvb_test_wo_gt.json: no item has an answer
    with pytest.raises(KitInputError, match=r"lvb_test_wo_gt.json: no item has a 'correct_choice': answers withheld"):
        BENCHMARKS["longvideobench"](write_json(tmp_path / "lvb_test_wo_gt.json", [record]), tmp_path)


# ---- MVBench -----------------------------------------------------------------------------------
def test_mvbench_items_and_prompt(tmp_path):
    json_dir = tmp_path / "MVBench" / "json"
    write_json(json_dir / "action_sequence.json", [
        {"video": "ZS9XR.mp4", "question": "What did the person do first?", "candidates": ["Sat.", "Ran.", "Ate."],
         "answer": "Ran.", "start": 1.0, "end": 9.5}])
    write_json(json_dir / "fine_grained_pose.json", [
        {"video": "S001.avi", "question": "Which pose?", "candidates": ["sit", "stand", "kneel", "lie"], "answer": "lie"}])
    video_root = tmp_path / "MVBench" / "video"
    items = BENCHMARKS["mvbench"](json_dir, video_root)
    check_kit_format(items)
    assert [it["category"] for it in items] == ["action_sequence", "fine_grained_pose"]
    assert [answer_letter(it) for it in items] == ["B", "D"]
    assert items[0]["problem_id"] == "action_sequence_0" and items[0]["meta"]["start"] == 1.0
    assert items[0]["path"] == str((video_root / "star/Charades_segment/ZS9XR.mp4").resolve())
    assert items[1]["path"] == str((video_root / "nturgbd_convert/S001.avi").resolve())
    assert items[0]["prompt"] == ("Question:What did the person do first?\nOption:\n(A) Sat.\n(B) Ran.\n(C) Ate.\n"
                                  "Only give the best option.\n")


def test_mvbench_bad_inputs(tmp_path):
    task = write_json(tmp_path / "json" / "action_count.json",
                      [{"video": "a.mp4", "question": "How many?", "candidates": ["1", "2"], "answer": "3"}])
    with pytest.raises(KitInputError, match="action_count.json: item 0 answer '3' is not one of its candidates"):
        BENCHMARKS["mvbench"](task.parent, tmp_path)
    write_json(task, [{"video": "a.mp4", "question": "How many?", "answer": "3"}])
    with pytest.raises(KitInputError, match=r"item 0 has no field 'candidates' \(is this a MVBench annotation file\?\)"):
        BENCHMARKS["mvbench"](task, tmp_path)
    with pytest.raises(KitInputError, match="nowhere: folder not found"):
        BENCHMARKS["mvbench"](tmp_path / "nowhere", tmp_path)


# ---- answer parsing and scoring ----------------------------------------------------------------
@pytest.mark.parametrize("benchmark, expected", [
    # outputs:      "B"   "(B) cat"  "The answer is B."  "Answer: C"  "I don't know"
    ("videomme", ["B", "B", "B", "A", None]),  # first capital A-D: "Answer" gives A
    ("longvideobench", ["B", "B", "B", "A", None]),  # same rule (lmms-eval would then guess at random)
    ("mlvu_dev", ["B", "B", None, None, None]),  # the character before ")", else the bare text
    ("mlvu_test", ["B", "B", None, None, None]),
    ("mvbench", ["B", "B", "B", "C", None]),  # first one-letter word a-e
])
def test_parse_answer_as_lmms_eval(benchmark, expected):
    outputs = ["B", "(B) cat", "The answer is B.", "Answer: C", "I don't know"]
    assert [parse_answer(benchmark, text, OPTIONS4) for text in outputs] == expected


def test_parse_answer_details():
    assert parse_answer("videomme", "The best answer is D", OPTIONS4) == "D"
    assert parse_answer("videomme", "Best answer: C", OPTIONS4) == "B"  # lmms-eval's glued prefixes leave "Best"
    assert parse_answer("longvideobench", "Best answer: C", OPTIONS4) == "C"
    assert parse_answer("longvideobench", "E", OPTIONS4 + ["E. x"]) == "E"
    assert parse_answer("mlvu_dev", "C) a man", OPTIONS4) == "C"  # the usual reply after "Best option: ("
    assert parse_answer("mvbench", "D. a book", OPTIONS4) == "D"
    assert parse_answer("mvbench", "D", OPTIONS4[:3]) is None  # a letter with no option can never score


def test_unknown_benchmark_names_the_valid_ones():
    with pytest.raises(KitInputError, match="benchmark 'mlvu': unknown; valid names are longvideobench, mlvu_dev, mlvu_test, mvbench, videomme"):
        BENCHMARKS["mlvu"]
    with pytest.raises(KitInputError, match="benchmark 'egoschema': unknown"):
        parse_answer("egoschema", "A", OPTIONS4)


def test_accuracy_by_category(videomme):
    items = BENCHMARKS["videomme"](*videomme)  # answers B, C (short), A (medium)
    table = accuracy_by_category(items, ["B", None, "A"])
    rows = {row.category: (row.n, row.correct, row.accuracy) for row in table.itertuples()}
    assert list(table.columns) == ["benchmark", "category", "n", "correct", "accuracy"]
    assert set(table["benchmark"]) == {"videomme"}
    assert rows["short"] == (2, 1, 0.5) and rows["medium"] == (1, 1, 1.0)
    assert rows["overall"] == (3, 2, pytest.approx(2 / 3))
    assert rows["mean over categories"][2] == pytest.approx(0.75)
    with pytest.raises(KitInputError, match="predicted_letters: 1 predictions for 3 items"):
        accuracy_by_category(items, ["B"])


# ---- a wrong value in one item: one line naming the item -----------------------------------------
def test_a_null_question_or_video_names_the_item(tmp_path, videomme):
    annotation, video_root = videomme
    records = json.loads(annotation.read_text())
    records[1]["question"] = None
    with pytest.raises(KitInputError) as err:
        BENCHMARKS["videomme"](write_json(tmp_path / "bad" / "videomme.json", records), video_root)
    assert str(err.value).endswith("videomme.json: item 1 field 'question' should be a non-empty text, got None")
    records[1]["question"], records[2]["videoID"] = "How many?", None
    with pytest.raises(KitInputError, match="videomme.json: item 2 field 'videoID' should be a name or id, got None"):
        BENCHMARKS["videomme"](write_json(tmp_path / "bad" / "videomme.json", records), video_root)
    lvb = lvb_record(1, 60, 0)
    lvb["question"] = None
    with pytest.raises(KitInputError, match="lvb_val.json: item 0 field 'question' should be a non-empty text, got None"):
        BENCHMARKS["longvideobench"](write_json(tmp_path / "lvb_val.json", [lvb]), tmp_path)
    mlvu = {"video": "v.mp4", "question": None, "candidates": ["a", "b"], "answer": "a", "question_type": "ego"}
    with pytest.raises(KitInputError, match="mlvu.json: item 0 field 'question' should be a non-empty text, got None"):
        BENCHMARKS["mlvu_dev"](write_json(tmp_path / "mlvu.json", [mlvu]), tmp_path)
    mvbench = {"video": None, "question": "How many?", "candidates": ["1", "2"], "answer": "2"}
    with pytest.raises(KitInputError, match="action_count.json: item 0 field 'video' should be a name or id, got None"):
        BENCHMARKS["mvbench"](write_json(tmp_path / "action_count.json", [mvbench]), tmp_path)


@pytest.mark.parametrize("choice", [True, False, 1.0, "1"])
def test_longvideobench_refuses_a_correct_choice_that_is_not_a_whole_number(tmp_path, choice):
    record = lvb_record(1, 60, 0)
    record["correct_choice"] = choice  # `true` is 1 to Python: it would read as option B
    with pytest.raises(KitInputError, match=f"item 0 correct_choice {choice!r} is not an index into its 4 candidates"):
        BENCHMARKS["longvideobench"](write_json(tmp_path / "lvb_val.json", [record]), tmp_path)


# ---- the public layouts, detected from the file or folder given ----------------------------------
needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")


@needs_pyarrow
def test_videomme_from_its_folder_and_the_per_video_json(tmp_path):
    import pandas as pd

    root = tmp_path / "Video-MME"  # lmms-lab/Video-MME: videomme/test-00000-of-00001.parquet and data/
    (root / "videomme").mkdir(parents=True)
    pd.DataFrame([videomme_record(1, "short", "A"), videomme_record(2, "long", "C")]).to_parquet(
        root / "videomme" / "test-00000-of-00001.parquet")
    touch(root / "data" / "vid1.mp4")
    items = BENCHMARKS["videomme"](root, root)  # both given as the Video-MME folder
    assert [answer_letter(it) for it in items] == ["A", "C"]
    assert items[0]["path"] == str((root / "data" / "vid1.mp4").resolve())
    # Video-MME's own evaluation json: one record a video with its questions; the file named by the YouTube id
    nested = [{"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
               "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
               "questions": [{"question_id": "001-1", "task_type": "Counting Problem", "question": "How many?",
                              "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "D"},
                             {"question_id": "001-2", "task_type": "OCR Problems", "question": "What is written?",
                              "options": ["A. a.", "B. b.", "C. c.", "D. d."], "answer": "B"}]}]
    items = BENCHMARKS["videomme"](write_json(tmp_path / "videomme_eval.json", nested), root / "data")
    assert [(it["problem_id"], it["category"], answer_letter(it)) for it in items] == [("001-1", "short", "D"),
                                                                                      ("001-2", "short", "B")]
    assert items[1]["path"] == str((root / "data" / "fFjv93ACGo8.mp4").resolve())
    (tmp_path / "nothing").mkdir()
    with pytest.raises(KitInputError) as err:
        BENCHMARKS["videomme"](tmp_path / "nothing", root)
    assert str(err.value).endswith("nothing: no VideoMME annotation file here (expected "
                                   "videomme/test-00000-of-00001.parquet or test-00000-of-00001.parquet or "
                                   "videomme/*.parquet)")


@needs_pyarrow
def test_longvideobench_from_its_folder_the_parquet_and_without_answers(tmp_path):
    import pandas as pd

    root = tmp_path / "LongVideoBench"
    row = {k: v for k, v in lvb_record(1, 60, 3).items() if k != "candidates"}
    row.update(option0="a jump", option1="a fall", option2="a song", option3="a dance", option4="N/A")
    root.mkdir()
    pd.DataFrame([row]).to_parquet(root / "validation-00000-of-00001.parquet")
    touch(root / "videos" / "v1.mp4")
    [item] = BENCHMARKS["longvideobench"](root, root)  # the folder: its parquet and its videos/
    assert item["options"] == ["A. a jump", "B. a fall", "C. a song", "D. a dance"] and answer_letter(item) == "D"
    assert item["path"] == str((root / "videos" / "v1.mp4").resolve())
    assert item["prompt"] == ("What happens after the 1th cut?\nA. a jump\nB. a fall\nC. a song\nD. a dance\n"
                              "Answer with the option's letter from the given choices directly.\n")
    test_only = tmp_path / "test_only"
    write_json(test_only / "lvb_test_wo_gt.json", [{k: v for k, v in lvb_record(1, 60, 0).items() if k != "correct_choice"}])
    with pytest.raises(KitInputError) as err:
        BENCHMARKS["longvideobench"](test_only, root)
    assert str(err.value).endswith("test_only: only lvb_test_wo_gt.json here, which has no answers (they are "
                                   "withheld); the paper reports the validation split: give lvb_val.json (or "
                                   "validation-00000-of-00001.parquet)")


@needs_pyarrow
def test_mlvu_dev_from_its_folder_and_from_lmms_evals_copy(tmp_path):
    import pandas as pd

    mlvu = tmp_path / "MLVU"  # MLVU/MVLU: MLVU/json/<n>_<task>.json and MLVU/video/<n>_<task>/
    write_json(mlvu / "json" / "4_count.json", [{"video": "count_3.mp4", "duration": 200, "question": "How many cars?",
                                                 "candidates": ["1", "2", "3", "4"], "answer": "3",
                                                 "question_type": "count"}])
    touch(mlvu / "video" / "4_count" / "count_3.mp4")
    [published] = BENCHMARKS["mlvu_dev"](mlvu, mlvu)
    assert published["category"] == "count" and answer_letter(published) == "C"
    assert published["path"] == str((mlvu / "video" / "4_count" / "count_3.mp4").resolve())
    # sy1998/MLVU_dev (the release's mlvu_dev): the options inside the question, each line ending with a newline
    copy = tmp_path / "MLVU_dev"
    (copy / "mlvu").mkdir(parents=True)
    pd.DataFrame([{"video_name": "count_3.mp4", "duration": 200.0, "question": "How many cars?\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n",
                   "candidates": ["1", "2", "3", "4"], "answer": "C", "task_type": "count", "question_id": "Q7"}]
                 ).to_parquet(copy / "mlvu" / "test-00000-of-00001.parquet")
    touch(copy / "video" / "count_3.mp4")
    [item] = BENCHMARKS["mlvu_dev"](copy, copy / "video")
    assert (item["problem_id"], item["category"], answer_letter(item)) == ("Q7", "count", "C")
    assert item["path"] == str((copy / "video" / "count_3.mp4").resolve())
    # both layouts give the release's prompt, character for character
    assert item["prompt"] == published["prompt"] == ("How many cars?\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n\n"
                                                     "Only give the best option.\nBest option: (")


def test_mlvu_test_from_its_ground_truth_and_withheld_without_it(tmp_path):
    root = tmp_path / "MLVU_Test"
    question = {"video": "sports_1.mp4", "duration": 900, "question": "Who scores?", "question_type": "sportsQA",
                "candidates": ["the keeper", "no one", "the striker", "the coach", "the referee", "a fan"],
                "question_id": "SQA_0"}
    write_json(root / "test_question.json", [question])  # as published: questions only
    with pytest.raises(KitInputError) as err:
        BENCHMARKS["mlvu_test"](root, root)
    message = str(err.value)
    assert message.endswith("MLVU_Test: MLVU test answers are withheld here: test_question.json has the questions "
                            "only; give test-ground-truth/test_mcq_gt.json (MLVU/MLVU_Test) or lmms-eval's copy "
                            "(sy1998/MLVU_Test), else MLVU test is not reproducible without the answers")
    assert "\n" not in message
    with pytest.raises(KitInputError, match=r"test_question.json: MLVU test answers are withheld: no item has an 'answer'"):
        BENCHMARKS["mlvu_test"](root / "test_question.json", root)
    write_json(root / "test-ground-truth" / "test_mcq_gt.json", [{**question, "answer": "the striker"}])
    touch(root / "video" / "sports_1.mp4")
    [item] = BENCHMARKS["mlvu_test"](root, root)  # the folder: its ground truth and its video/
    assert (item["benchmark"], item["category"], item["problem_id"], answer_letter(item)) == ("mlvu_test", "sportsQA",
                                                                                            "SQA_0", "C")
    assert item["path"] == str((root / "video" / "sports_1.mp4").resolve())
    assert item["prompt"] == ("Who scores?\n(A) the keeper\n(B) no one\n(C) the striker\n(D) the coach\n(E) the referee\n"
                              "(F) a fan\n\nOnly give the best option.\nBest option: (")


def test_mlvu_question_is_written_as_lmms_evals_copy():
    from cacovid_lib.data.benchmarks import mlvu_question

    # a row of sy1998/MLVU_dev as its dataset viewer shows it, and the published record it comes from
    assert mlvu_question("What color is the main male character in the video?", ["Yellow", "Red", "Green", "Blue"]) == (
        "What color is the main male character in the video?\n(A) Yellow\n(B) Red\n(C) Green\n(D) Blue\n")


def test_a_record_in_neither_layout_names_both_spellings(tmp_path):
    record = lvb_record(1, 60, 0)
    del record["candidates"]
    with pytest.raises(KitInputError) as err:
        BENCHMARKS["longvideobench"](write_json(tmp_path / "lvb_val.json", [record]), tmp_path)
    assert str(err.value).endswith("lvb_val.json: item 0 has no field 'candidates' (lvb_val.json) or "
                                   "'option0'..'option4' (the parquet) (is this a LongVideoBench annotation file?)")
    mlvu = {"vid": "v.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "a", "question_type": "ego"}
    with pytest.raises(KitInputError, match=r"mlvu.json: item 0 has no field 'video' \(the published json\) or "
                                            r"'video_name' \(lmms-eval's copy\)"):
        BENCHMARKS["mlvu_dev"](write_json(tmp_path / "mlvu.json", [mlvu]), tmp_path)
    mlvu = {"video": "v.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "a", "type": "ego"}
    with pytest.raises(KitInputError, match=r"mlvu.json: item 0 has no field 'question_type' \(the published json\) "
                                            r"or 'task_type' \(lmms-eval's copy\)"):
        BENCHMARKS["mlvu_dev"](write_json(tmp_path / "mlvu.json", [mlvu]), tmp_path)
