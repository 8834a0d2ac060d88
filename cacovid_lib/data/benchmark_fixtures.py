"""Tiny copies of the paper's four benchmarks in their real public layouts, with real MP4s, for dry runs.

One job: `write_benchmark_fixtures` writes LongVideoBench, MLVU dev, MLVU test and VideoMME the way a user has them
on disk (the same file names, folders, fields and nesting as the real files; benchmarks.py's docstring names each
layout and its source), each with a few questions about small real videos, and returns the `benchmarks:` block
that points params at them. The whole GPU path (loaders, data check, video reading, prompting, scoring) can then
run end to end without the real data.

Two layouts, as users have them:
- "official" (the benchmarks' own releases): LongVideoBench/lvb_val.json + videos/; MLVU/json/<n>_<task>.json
  per task (with the open-ended 8_sub_scene and 9_summary files the loader skips) + MLVU/video/<n>_<task>/;
  MLVU_Test/test_question.json (questions only, as published) and test-ground-truth/test_mcq_gt.json (the
  answers) + video/; Video-MME/videomme/test-00000-of-00001.parquet + data/.
- "lmms_eval" (the copies the release's lmms-eval loads): LongVideoBench/validation-00000-of-00001.parquet
  (option0..option4) + videos/; MLVU_dev/mlvu/test-00000-of-00001.parquet and MLVU_Test/mlvu_test/
  test-00000-of-00001.parquet (options inside the question, answers as letters) with their videos in one
  folder; VideoMME as above (lmms-eval reads that very parquet).

Every video shows a square of one colour moving over dim noise; every question asks its colour, so the answers are
consistent with the pixels (a model that sees can score). The last video of each benchmark is shorter than
`num_frames`, to exercise benchmarks.read_benchmark_video's repeated frames. Deterministic for a seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cacovid_lib.data.benchmarks import mlvu_question
from cacovid_lib.data.schema import OPTION_LETTERS
from cacovid_lib.data.video_io import write_video
from cacovid_lib.io_utils import KitInputError, write_json_atomic

FPS = 8
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 80, 230), "yellow": (235, 215, 40),
           "purple": (150, 60, 180), "orange": (245, 140, 30), "white": (240, 240, 240), "cyan": (40, 210, 220)}
LAYOUTS = ("official", "lmms_eval")
# MLVU dev's multiple-choice task files (published names) and the lmms-eval copy's task names
MLVU_DEV_TASKS = (("1_plotQA", "plotQA", "plotQA"), ("2_needle", "findNeedle", "needle"), ("3_ego", "ego", "ego"),
                  ("4_count", "count", "count"), ("5_order", "order", "order"),
                  ("6_anomaly_reco", "anomaly_reco", "anomaly_reco"),
                  ("7_topic_reasoning", "topic_reasoning", "topic_reasoning"))
# MLVU test's multiple-choice tasks: question id prefix and question type (as MLVU's test_res.json example and
# lmms-eval's mlvu_test task list name them)
MLVU_TEST_TASKS = (("AR", "anomaly_reco"), ("SQA", "sportsQA"), ("AO", "order"), ("NQA", "needleQA"),
                   ("PQA", "plotQA"), ("ER", "ego"), ("AC", "count"), ("TR", "topic_reasoning"), ("TQA", "tutorialQA"))
VIDEOMME_DURATIONS = ("short", "medium", "long")
LVB_DURATION_GROUPS = (15, 60, 600, 3600)


def _clip(rng: np.random.Generator, colour: str, num_frames: int, size: int) -> np.ndarray:
    """uint8 (num_frames, size, size, 3): dim noise with a `colour` square moving left to right."""
    frames = rng.integers(0, 48, (num_frames, size, size, 3), dtype=np.uint8)
    side = max(size // 3, 4)
    for f in range(num_frames):
        x = (size - side) * f // max(num_frames - 1, 1)
        y = (size - side) // 2
        frames[f, y:y + side, x:x + side] = COLOURS[colour]
    return frames


def _question(rng: np.random.Generator, num_options: int) -> tuple[list[str], int]:
    """(option colours, index of the right one): distinct colours, the right one drawn at random."""
    names = list(COLOURS)
    options = [names[i] for i in rng.permutation(len(names))[:num_options]]
    return options, int(rng.integers(num_options))


def _video(rng, path: Path, colour: str, num_frames: int, size: int) -> float:
    write_video(path, _clip(rng, colour, num_frames, size), fps=FPS)
    return num_frames / FPS  # its duration in seconds


def _frames(n: int, total: int, num_frames: int) -> int:
    # the last video of a benchmark is shorter than num_frames; the others a little longer
    return max(1, num_frames // 2) if n == total - 1 else num_frames + 4


def _parquet(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(path, index=False)


def _longvideobench(root: Path, n_items: int, num_frames: int, size: int, rng, layout: str) -> dict:
    base = root / "LongVideoBench"
    records = []
    for n in range(n_items):
        video_id = f"lvbFixture{n:02d}"
        options, answer = _question(rng, 4 + n % 2)  # LongVideoBench has 4 or 5 candidates
        duration = _video(rng, base / "videos" / f"{video_id}.mp4", options[answer], _frames(n, n_items, num_frames), size)
        question = "What colour is the moving square?"
        record = {"video_id": video_id, "question": question, "question_wo_referring_query": question,
                  "candidates": options, "correct_choice": answer, "position": [0], "topic_category": "NP-News-Programs",
                  "question_category": "S2A", "level": "L1-Perception", "id": f"{video_id}_0",
                  "video_path": f"{video_id}.mp4", "subtitle_path": f"{video_id}_en.json",
                  "duration_group": LVB_DURATION_GROUPS[n % len(LVB_DURATION_GROUPS)],
                  "starting_timestamp_for_subtitles": 0, "duration": duration, "view_count": 0}
        if layout == "lmms_eval":  # the parquet spells the candidates as option0..option4, "N/A" when unused
            candidates = record.pop("candidates")
            record.update({f"option{i}": candidates[i] if i < len(candidates) else "N/A" for i in range(5)})
        records.append(record)
    if layout == "official":
        write_json_atomic(base / "lvb_val.json", records)
        annotations = base / "lvb_val.json"
    else:
        annotations = base / "validation-00000-of-00001.parquet"
        _parquet(annotations, records)
    return {"annotations": str(annotations), "video_root": str(base / "videos")}


def _mlvu_dev(root: Path, n_items: int, num_frames: int, size: int, rng, layout: str) -> dict:
    base = root / ("MLVU" if layout == "official" else "MLVU_dev")
    per_file, rows = {}, []
    for n in range(n_items):
        stem, published_task, lmms_task = MLVU_DEV_TASKS[n % len(MLVU_DEV_TASKS)]
        video = f"{lmms_task}_{n}.mp4"
        options, answer = _question(rng, 4)
        folder = base / "video" / stem if layout == "official" else base / "video"
        duration = _video(rng, folder / video, options[answer], _frames(n, n_items, num_frames), size)
        question = "What colour is the moving square?"
        if layout == "official":
            per_file.setdefault(stem, []).append({"video": video, "duration": duration, "question": question,
                                                  "candidates": options, "answer": options[answer],
                                                  "question_type": published_task})
        else:
            rows.append({"video_name": video, "duration": duration, "question": mlvu_question(question, options),
                         "candidates": options, "answer": OPTION_LETTERS[answer], "task_type": lmms_task,
                         "question_id": f"Q{n}"})
    if layout == "official":
        for stem, records in per_file.items():
            write_json_atomic(base / "json" / f"{stem}.json", records)
        # the published folder also has the open-ended tasks, which lmms-eval (and the loader) leave out
        write_json_atomic(base / "json" / "8_sub_scene.json", [
            {"video": "subPlot_0.mp4", "duration": 1.0, "question": "Describe the scene.", "answer": "A square moves.",
             "question_type": "subPlot"}])
        write_json_atomic(base / "json" / "9_summary.json", [
            {"video": "summary_0.mp4", "duration": 1.0, "question": "Summarise the video.",
             "answer": "A square moves across.", "question_type": "summary"}])
        return {"annotations": str(base / "json"), "video_root": str(base / "video")}
    annotations = base / "mlvu" / "test-00000-of-00001.parquet"
    _parquet(annotations, rows)
    return {"annotations": str(annotations), "video_root": str(base / "video")}


def _mlvu_test(root: Path, n_items: int, num_frames: int, size: int, rng, layout: str) -> dict:
    base = root / "MLVU_Test"
    counts, records, rows = {}, [], []
    for n in range(n_items):
        prefix, task = MLVU_TEST_TASKS[n % len(MLVU_TEST_TASKS)]
        k = counts[prefix] = counts.get(prefix, -1) + 1
        video = f"test_{task}_{k}.mp4"
        options, answer = _question(rng, 6)  # MLVU test asks six options
        folder = base / "video" if layout == "official" else base / "videos"
        duration = _video(rng, folder / video, options[answer], _frames(n, n_items, num_frames), size)
        question = "What colour is the moving square?"
        records.append({"video": video, "duration": duration, "question": question, "candidates": options,
                        "answer": options[answer], "question_type": task, "question_id": f"{prefix}_{k}"})
        rows.append({"video_name": video, "duration": duration, "question": mlvu_question(question, options),
                     "candidates": options, "answer": OPTION_LETTERS[answer], "task_type": task,
                     "question_id": f"{prefix}_{k}"})
    if layout == "official":
        # as published: the questions without their answers, and the multiple-choice ground truth beside them
        write_json_atomic(base / "test_question.json", [{k: v for k, v in r.items() if k != "answer"} for r in records])
        annotations = base / "test-ground-truth" / "test_mcq_gt.json"
        write_json_atomic(annotations, records)
        return {"annotations": str(annotations), "video_root": str(base / "video")}
    annotations = base / "mlvu_test" / "test-00000-of-00001.parquet"
    _parquet(annotations, rows)
    return {"annotations": str(annotations), "video_root": str(base / "videos")}


def _videomme(root: Path, n_items: int, num_frames: int, size: int, rng, layout: str) -> dict:
    base = root / "Video-MME"
    num_videos = (n_items + 1) // 2  # two questions a video (the real one asks three)
    records = []
    for v in range(num_videos):
        video_id, youtube_id = f"{v + 1:03d}", f"vmeFixture{v:01d}"
        options, answer = _question(rng, 4)
        _video(rng, base / "data" / f"{youtube_id}.mp4", options[answer], _frames(v, num_videos, num_frames), size)
        for q in range(min(2, n_items - 2 * v)):
            # both questions about the same square: the second lists the options in another order
            order = list(range(4)) if q == 0 else [int(i) for i in rng.permutation(4)]
            shown = [options[i] for i in order]
            records.append({"video_id": video_id, "duration": VIDEOMME_DURATIONS[v % 3], "domain": "Knowledge",
                            "sub_category": "Astronomy", "url": f"https://www.youtube.com/watch?v={youtube_id}",
                            "videoID": youtube_id, "question_id": f"{video_id}-{q + 1}",
                            "task_type": "Attribute Perception",
                            "question": "What colour is the moving square?" if q == 0 else
                            "Which colour does the square have?",
                            "options": [f"{OPTION_LETTERS[i]}. {c.capitalize()}." for i, c in enumerate(shown)],
                            "answer": OPTION_LETTERS[shown.index(options[answer])]})
    annotations = base / "videomme" / "test-00000-of-00001.parquet"  # lmms-lab/Video-MME, for either layout
    _parquet(annotations, records)
    return {"annotations": str(annotations), "video_root": str(base / "data")}


def write_benchmark_fixtures(root, items_per_benchmark: int = 3, num_frames: int = 8, size: int = 64,
                             layout: str = "official", seed: int = 0) -> dict:
    """Write the four paper benchmarks under `root` in `layout` ("official" or "lmms_eval"; module docstring), each
    with `items_per_benchmark` questions about `size`x`size` MP4s (the last shorter than `num_frames`), and return
    params' `benchmarks:` block for them: {"longvideobench", "mlvu_dev", "mlvu_test", "videomme"} ->
    {"annotations": ..., "video_root": ...} (absolute paths, as text)."""
    if layout not in LAYOUTS:
        raise KitInputError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    for name, value, low in (("items_per_benchmark", items_per_benchmark, 1), ("num_frames", num_frames, 2),
                             ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise KitInputError(f"{name}: {value!r} must be a whole number, at least {low}")
    if size % 2:  # H.264 in yuv420p needs even sides
        raise KitInputError(f"size: {size} must be even")
    root = Path(root).expanduser().resolve()
    writers = {"longvideobench": _longvideobench, "mlvu_dev": _mlvu_dev, "mlvu_test": _mlvu_test,
               "videomme": _videomme}
    # one generator per benchmark, so that each benchmark's files do not depend on the others'
    return {name: write(root, items_per_benchmark, num_frames, size, np.random.default_rng([seed, n]), layout)
            for n, (name, write) in enumerate(writers.items())}


def write_video_r1_fixture(root, items: int = 4, num_frames: int = 8, size: int = 64, seed: int = 0) -> dict:
    """A Video-R1 training set in its public layout under `root`: `Video-R1-260k.json` (multiple-choice video items:
    problem, options, `<answer>X</answer>` solution, `./videos/...` path) and the MP4s (the last shorter than
    `num_frames`). Returns {"json": ..., "media_root": ...} for the params' `blind_filter.json` and
    `policy.video_r1.media_root`."""
    root = Path(root).expanduser().resolve()
    rng = np.random.default_rng([seed, 99])
    records = []
    for n in range(items):
        options, answer = _question(rng, 4)
        frames = _frames(n, items, num_frames)
        _video(rng, root / "videos" / f"v{n}.mp4", options[answer], frames, size)
        records.append({"problem_id": n, "problem": "What colour is the square?", "data_type": "video",
                        "problem_type": "multiple choice", "options": [f"{l}. {o}" for l, o in zip("ABCD", options)],
                        "solution": f"<answer>{'ABCD'[answer]}</answer>", "path": f"./videos/v{n}.mp4",
                        "data_source": "fixture"})
    (root / "Video-R1-260k.json").write_text(json.dumps(records, indent=1))
    return {"json": str(root / "Video-R1-260k.json"), "media_root": str(root)}


if __name__ == "__main__":  # print the block for a folder, e.g. to paste into a dry-run params file
    import sys

    print(json.dumps(write_benchmark_fixtures(sys.argv[1] if len(sys.argv) > 1 else "benchmark_fixtures"), indent=2))
