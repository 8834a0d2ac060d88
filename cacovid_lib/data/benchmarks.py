"""Real video-QA benchmarks as users have them on disk, read, checked, prompted and scored as the CaCoVID release's
lmms-eval does.

One job: turn each benchmark's published annotation file into the kit's Video-R1 style items, read their videos
as the release does (`read_benchmark_video`), check a user's data folder before any GPU time
(`check_benchmark_data`), and turn a model's free-text answer into the option letter lmms-eval would score, so
that accuracies are comparable with the CaCoVID paper's (LLaVA-OneVision-7B and Qwen2.5-VL-3B through the
release's lmms-eval fork, 32 frames, on LongVideoBench val, MLVU dev and test, VideoMME; MVBench as well).

Every item has the kit's fields (`problem_id`, `problem`, `options` as ["A. ...", ...], `solution`
"<answer>X</answer>", absolute video `path`, `data_type`, `problem_type`) plus `benchmark` (a key of
BENCHMARKS), `category` (what lmms-eval breaks the score down by: VideoMME duration, MLVU task,
LongVideoBench duration group, MVBench task), `prompt` (the release's full question text, i.e. its task's
`default` prompt kwargs) and `meta` (the annotation record as read).

Layouts accepted, each detected from the file or folder given (`annotations` may be the annotation file or the
benchmark's folder; `video_root` the video folder or the benchmark's folder). What matches none is a one-line
KitInputError naming the file and what is expected.

- VideoMME, lmms-lab/Video-MME on Hugging Face (the benchmark's own distribution and what lmms-eval loads):
  `videomme/test-00000-of-00001.parquet` (`video_id`, `duration`, `domain`, `sub_category`, `url`, `videoID`,
  `question_id`, `task_type`, `question`, `options` ["A. ...", ...], `answer` a letter) and `data/<videoID>.mp4`
  (from videos_chunked_*.zip; .MP4/.mkv also, as lmms-eval looks). Also the same records as a JSON list, and the
  per-video JSON of Video-MME's own evaluation script (video fields plus a `questions` list; the video file is
  named by `videoID`, else by the YouTube id in `url`).
- LongVideoBench, longvideobench/LongVideoBench (GitHub and Hugging Face; lmms-eval's longvideobench_val_v reads
  the same repository): `lvb_val.json` (`id`, `question`, `candidates`, `correct_choice` an index, `video_path`,
  `duration_group`, ...) or `validation-00000-of-00001.parquet` (the same records with `option0`..`option4`,
  unused ones "N/A", instead of `candidates`), and `videos/<video_path>` (from videos.tar.part.*).
  `lvb_test_wo_gt.json` carries no answers.
- MLVU dev, MLVU/MVLU on Hugging Face (annotations also in JUNJIE99/MLVU): the folder `MLVU/json/` of per-task
  files `<n>_<task>.json` (`video`, `duration`, `question`, `candidates`, `answer` the correct candidate's text,
  `question_type`; 8_sub_scene and 9_summary are open-ended and skipped, as lmms-eval has only the
  multiple-choice tasks) and `MLVU/video/<n>_<task>/<video>`. Or lmms-eval's copy sy1998/MLVU_dev (the release's
  mlvu_dev dataset): `mlvu/test-00000-of-00001.parquet` (`video_name`, `duration`, `question` holding the options
  as "(A) ..." lines, `candidates`, `answer` a letter, `task_type`, `question_id`) with its video_part_*.zip
  unzipped into one folder (`<video_root>/<video_name>`).
- MLVU test, MLVU/MLVU_Test on Hugging Face: `test_question.json` has the questions only (answers withheld, a
  one-line error); `test-ground-truth/test_mcq_gt.json` has the multiple-choice answers (the dev json's fields plus
  `question_id`, six candidates); videos `video/<video>`. Or lmms-eval's copy sy1998/MLVU_Test (the release's
  mlvu_test dataset, answers as letters; fields as the MLVU_dev copy) with its videos in one folder.
- MVBench, OpenGVLab/MVBench: `json/<task>.json` and `video/<task folder>/<video>`.

Prompts and answer parsing follow the release's lmms-eval fork (LivingFutureLab/CaCoVID,
lmms_eval/lmms_eval/tasks/{videomme,mlvu,longvideobench}/utils.py and their yamls; the model is lmms-eval's
`llava_hf`, so each task's `default` prompt kwargs); where the release has no such task (MVBench) upstream
EvolvingLMMs-Lab/lmms-eval is followed. docs/gpu.md, "Provenance of the benchmark loaders", tables the versions.
"""
from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from cacovid_lib.data.schema import OPTION_LETTERS, answer_letter
from cacovid_lib.data.video_io import uniform_frame_indices
from cacovid_lib.io_utils import KitInputError, read_json

PLACEHOLDER = "/path/to"  # how paper/params.yaml marks a path the user has still to fill in


# ---- reading annotation files --------------------------------------------------------------------
def _read_parquet(path: Path) -> list:
    # pandas needs an engine for parquet; without one, say so instead of pandas' long ImportError
    if not any(importlib.util.find_spec(engine) for engine in ("pyarrow", "fastparquet")):
        raise KitInputError(f"{path}: reading parquet needs pyarrow, which is not installed in this environment; "
                            f"convert it to JSON where pyarrow is available "
                            f"(pandas.read_parquet(path).to_json('file.json', orient='records')) and load that")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # the engines raise many types; all mean the same thing here
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise KitInputError(f"{path}: not a valid parquet file ({reason})") from None
    return json.loads(frame.to_json(orient="records"))  # numpy arrays (e.g. options) -> plain lists


def _read_records(path, title: str) -> list:
    """The list of annotation records in a JSON or parquet file (each checked later, item by item)."""
    path = Path(path)
    if not path.is_file():
        raise KitInputError(f"{path}: file not found")
    records = _read_parquet(path) if path.suffix == ".parquet" else read_json(path)
    if not isinstance(records, list):
        raise KitInputError(f"{path}: expected a list of {title} items, got a JSON {type(records).__name__}")
    if not records:
        raise KitInputError(f"{path}: no {title} items in it")
    return records


def _object(path: Path, index: int, record, title: str) -> None:
    if not isinstance(record, dict):
        raise KitInputError(f"{path}: item {index} is not an object (is this a {title} annotation file?)")


def _require(path: Path, index: int, record: dict, fields: Sequence[str], title: str) -> None:
    for field in fields:
        if field not in record:
            raise KitInputError(f"{path}: item {index} has no field {field!r} (is this a {title} annotation file?)")


def _text(path: Path, index: int, record: dict, field: str) -> str:
    """record[field] as a non-empty text (a question, a video name), else a one-line error naming the item."""
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise KitInputError(f"{path}: item {index} field {field!r} should be a non-empty text, got {value!r}")
    return value


def _name(path: Path, index: int, record: dict, field: str) -> str:
    """record[field] as a file name or id: a non-empty text or a whole number (not a bool), else a one-line error."""
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise KitInputError(f"{path}: item {index} field {field!r} should be a name or id, got {value!r}")
    return str(value)


def _json_files(folder, title: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise KitInputError(f"{folder}: folder not found")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise KitInputError(f"{folder}: no .json files in this folder (is it the {title} annotation folder?)")
    return files


def _find(folder: Path, candidates: Sequence[str]) -> Path | None:
    """The first of `candidates` (paths relative to `folder`, glob patterns allowed) that is a file."""
    for pattern in candidates:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if found:
            return found[0]
    return None


def _annotation_file(source, title: str, candidates: Sequence[str], withheld: dict[str, str] | None = None) -> Path:
    """`source` itself when it is a file; in a benchmark folder, the first known annotation file; a folder with only
    an answerless file (withheld: name -> what to load instead) or with none is a one-line error."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise KitInputError(f"{source}: file not found")
    found = _find(source, candidates)
    if found is not None:
        return found
    for name, instead in (withheld or {}).items():
        if _find(source, [name, f"*/{name}"]) is not None:
            raise KitInputError(f"{source}: only {name} here, which has no answers (they are withheld); {instead}")
    raise KitInputError(f"{source}: no {title} annotation file here (expected {' or '.join(candidates)})")


def _collect(records: list, build: Callable[[int, dict], dict | None], problems: list[str] | None) -> list[dict]:
    """The items built from `records`, one `build(index, record)` each (None: a record the benchmark skips). With a
    `problems` list, a record that cannot be built is one line there and the others are still built (the data
    check reports them all); without, its one-line KitInputError is raised."""
    items = []
    for index, record in enumerate(records):
        try:
            item = build(index, record)
        except KitInputError as err:
            if problems is None:
                raise
            problems.append(str(err))
            continue
        if item is not None:
            items.append(item)
    return items


# ---- building items ----------------------------------------------------------------------------
def _option_texts(path: Path, index: int, value, field: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int, float)) for v in value):
        raise KitInputError(f"{path}: item {index} field {field!r} should be a non-empty list of texts, got {value!r}")
    return [str(v) for v in value]


def _lettered(texts: Sequence[str]) -> list[str]:
    """Options as the kit writes them, "A. text"; texts already starting with their letter are kept."""
    return [t if t.startswith(f"{OPTION_LETTERS[i]}.") else f"{OPTION_LETTERS[i]}. {t}" for i, t in enumerate(texts)]


def _letter_answer(path: Path, index: int, answer, num_options: int) -> str:
    letters = OPTION_LETTERS[:num_options]
    if not (isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip() in letters):
        raise KitInputError(f"{path}: item {index} answer {answer!r} is not one of its option letters {letters}")
    return answer.strip()


def _first_existing(candidates: Sequence[Path]) -> Path:
    # benchmarks ship their videos in more than one layout/extension; take the one that is there, else the
    # first (so that a missing video is reported where the main layout expects it)
    return next((c for c in candidates if c.is_file()), candidates[0])


def _item(benchmark: str, category, problem_id, problem: str, options: list[str], answer: str, video: Path,
          prompt: str, record: dict) -> dict:
    return {
        "problem_id": str(problem_id),
        "problem": problem,
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": options,
        "solution": f"<answer>{answer}</answer>",
        "path": str(video),
        "benchmark": benchmark,
        "category": str(category),
        "prompt": prompt,
        "meta": record,
    }


def _check_videos(items: list[dict], annotation, video_root) -> None:
    paths = list(dict.fromkeys(item["path"] for item in items))
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise KitInputError(f"{video_root}: {len(missing)} of the {len(paths)} videos listed in {annotation} "
                            f"are missing, the first is {missing[0]}")


def _root(video_root) -> Path:
    return Path(video_root).expanduser().resolve()


# ---- VideoMME ----------------------------------------------------------------------------------
VIDEOMME_FILES = ("videomme/test-00000-of-00001.parquet", "test-00000-of-00001.parquet", "videomme/*.parquet")
VIDEOMME_OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video and "
                          "the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
VIDEOMME_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def videomme_prompt(question: str, options: Sequence[str]) -> str:
    """The release's `videomme_doc_to_text` (tasks/videomme/utils.py) with videomme.yaml's `default` post prompt:
    option prompt, question, the published "A. ..." options one a line, then the post prompt. Its leading newline
    is kept, so the prompt has an empty line before it, as in the release."""
    return VIDEOMME_OPTION_PROMPT + "\n" + question + "\n" + "\n".join(options) + "\n" + VIDEOMME_POST_PROMPT


def _videomme_records(path: Path) -> list:
    """The question records of a VideoMME file: the Hugging Face rows as they are; the per-video form of
    Video-MME's evaluation script flattened, each question with its video's fields."""
    records = _read_records(path, "VideoMME")
    if not all(isinstance(r, dict) and "questions" in r for r in records):
        return records
    flat = []
    for n, video in enumerate(records):
        if not isinstance(video["questions"], list):
            raise KitInputError(f"{path}: video {n} field 'questions' should be a list, got {video['questions']!r}")
        shared = {k: v for k, v in video.items() if k != "questions"}
        flat += [{**shared, **q} if isinstance(q, dict) else q for q in video["questions"]]
    return flat


def _youtube_id(url) -> str | None:
    match = re.search(r"[?&]v=([\w-]+)", url) if isinstance(url, str) else None
    return match.group(1) if match else None


def _videomme_item(path: Path, index: int, record, root: Path) -> dict:
    _object(path, index, record, "VideoMME")
    video_id = _youtube_id(record.get("url")) if "videoID" not in record else None
    if video_id is None:  # the Hugging Face rows name the video file by `videoID`
        _require(path, index, record, ("videoID",), "VideoMME")
        video_id = _name(path, index, record, "videoID")
    _require(path, index, record, ("duration", "question", "options", "answer"), "VideoMME")
    question, duration = _text(path, index, record, "question"), _text(path, index, record, "duration")
    options = _option_texts(path, index, record["options"], "options")
    answer = _letter_answer(path, index, record["answer"], len(options))
    # video_root: the `data` folder, or the Video-MME folder holding it
    video = _first_existing([folder / f"{video_id}{ext}" for folder in (root, root / "data")
                             for ext in (".mp4", ".MP4", ".mkv")])
    return _item("videomme", duration, record.get("question_id", index), question, _lettered(options), answer,
                 video, videomme_prompt(question, options), record)


def load_videomme(annotation_file, video_root, check_videos: bool = False, problems: list[str] | None = None) -> list[dict]:
    """VideoMME (module docstring: layouts): category `duration` (short/medium/long); `question_id`, `task_type`,
    `domain`, `sub_category` kept in `meta`. With `problems`, bad records are listed there instead of raised."""
    path, root = _annotation_file(annotation_file, "VideoMME", VIDEOMME_FILES), _root(video_root)
    items = _collect(_videomme_records(path), lambda i, r: _videomme_item(path, i, r, root), problems)
    if check_videos:
        _check_videos(items, path, root)
    return items


# ---- MLVU --------------------------------------------------------------------------------------
# MLVU's published dev json names the needle task "findNeedle"; lmms-eval's dev task list calls it "needle"
MLVU_TASK_ALIASES = {"findNeedle": "needle"}
# open-ended MLVU tasks (file stems of the dev folder, question types in the test files): not in lmms-eval's
# mlvu_dev/mlvu_test, skipped
MLVU_GENERATION_TASKS = ("sub_scene", "summary", "subPlot")
MLVU_POST_PROMPT = "\nOnly give the best option.\nBest option: ("
MLVU_TEST_ANSWERS = "test-ground-truth/test_mcq_gt.json"
_EMBEDDED_OPTION = re.compile(r"^\(?([A-Z])[).]\s*(.*)$")  # "(A) text", also "A. text" / "A) text"
_TASK_FILE = re.compile(r"^\d+_")  # the dev folder's per-task files: 1_plotQA.json, ...


def mlvu_prompt(question_with_options: str) -> str:
    """The release's `mlvu_doc_to_text` (tasks/mlvu/utils.py) with mlvu_dev.yaml's / mlvu_test.yaml's `default`
    kwargs: empty pre prompt, the question field (which holds the options), then "\\nOnly give the best
    option.\\nBest option: (". (Upstream lmms-eval once built "\\n" + question + "\\nOnly give the best
    option.\\n\\nBest option: (" instead, ignoring the kwargs; the release reads them.)"""
    return question_with_options + MLVU_POST_PROMPT


def mlvu_question(stem: str, options: Sequence[str]) -> str:
    """The question field as lmms-eval's copies (sy1998/MLVU_dev, sy1998/MLVU_Test) write it from the published
    question and candidates: the question, then one "(A) text" line per option, each ending with a newline."""
    return stem + "\n" + "".join(f"({OPTION_LETTERS[i]}) {o}\n" for i, o in enumerate(options))


def _mlvu_options(path: Path, index: int, record: dict) -> tuple[str, list[str], bool]:
    """(question stem, option texts, whether the question holds the options as "(A) ..." lines); the texts
    come from `candidates`, else from those lines."""
    question = _text(path, index, record, "question")
    lines = question.split("\n")
    found = [(n, m) for n, m in ((n, _EMBEDDED_OPTION.match(line.strip())) for n, line in enumerate(lines)) if n and m]
    if len(found) < 2 or "".join(m.group(1) for _, m in found) != OPTION_LETTERS[:len(found)]:
        found = []  # not an A, B, C... list of options, just a question over several lines
    stem = "\n".join(lines[:found[0][0]]).strip() if found else question
    if "candidates" in record:
        return stem, _option_texts(path, index, record["candidates"], "candidates"), bool(found)
    if found:
        return stem, [m.group(2) for _, m in found], True
    raise KitInputError(f"{path}: item {index} has no field 'candidates' (is this an MLVU annotation file?)")


def _mlvu_answer(path: Path, index: int, answer, options: list[str]) -> str:
    # the published json gives the answer's text, lmms-eval's copies its letter
    text = str(answer) if isinstance(answer, (int, float)) and not isinstance(answer, bool) else answer
    if text in options:
        return OPTION_LETTERS[options.index(text)]
    if isinstance(answer, str) and answer.strip() in OPTION_LETTERS[:len(options)] and answer.strip():
        return answer.strip()
    raise KitInputError(f"{path}: item {index} answer {answer!r} is neither one of its candidates nor an option letter")


def _mlvu_item(path: Path, index: int, record, task_from_file: str | None, root: Path, split: str) -> dict | None:
    _object(path, index, record, "MLVU")
    task = record.get("question_type", record.get("task_type", task_from_file))
    if task in MLVU_GENERATION_TASKS:
        return None
    _require(path, index, record, ("question", "answer"), "MLVU")
    video_field = "video" if "video" in record else "video_name"
    if record.get(video_field) is None:
        raise KitInputError(f"{path}: item {index} has no field 'video' (the published json) or 'video_name' "
                            f"(lmms-eval's copy) (is this an MLVU annotation file?)")
    video_name = _name(path, index, record, video_field)
    if task is None:
        raise KitInputError(f"{path}: item {index} has no field 'question_type' (the published json) or 'task_type' "
                            f"(lmms-eval's copy) (is this an MLVU annotation file?)")
    task = MLVU_TASK_ALIASES.get(task, task)
    stem, options, embedded = _mlvu_options(path, index, record)
    answer = _mlvu_answer(path, index, record["answer"], options)
    question = str(record["question"]) if embedded else mlvu_question(stem, options)
    # the published dev layout keeps each task's videos in video/<json stem>/; MLVU_Test and lmms-eval's copies in
    # one folder; video_root may be that folder or the benchmark folder holding it
    folders = [root, root / "video", root / "videos"]
    subfolders = [path.stem, task] if task_from_file else []
    video = _first_existing([f / s / video_name for f in folders for s in subfolders] + [f / video_name for f in folders])
    problem_id = record.get("question_id", f"mlvu_{split}_{task}_{index}")
    return _item(f"mlvu_{split}", task, problem_id, stem, _lettered(options), answer, video, mlvu_prompt(question), record)


def _mlvu_sources(source: Path, split: str) -> dict[Path, str | None]:
    """annotation file -> its task when the file is one task's (the dev folder), else None."""
    if source.is_file():
        return {source: None}
    if not source.is_dir():
        raise KitInputError(f"{source}: file not found")
    answers = _find(source, [MLVU_TEST_ANSWERS, "test_mcq_gt.json"]) if split == "test" else None
    if answers is not None:
        return {answers: None}
    folder = next((f for f in (source, source / "json", source / "MLVU" / "json")
                   if f.is_dir() and any(_TASK_FILE.match(p.name) for p in f.glob("*.json"))), None)
    if folder is not None:  # the published per-task folder
        files = [f for f in sorted(folder.glob("*.json")) if _TASK_FILE.match(f.name)
                 and not f.stem.endswith(MLVU_GENERATION_TASKS)]
        if not files:
            raise KitInputError(f"{folder}: only open-ended MLVU tasks here, no multiple-choice task .json files")
        return {f: _TASK_FILE.sub("", f.stem) for f in files}  # "1_plotQA" -> "plotQA"
    copy = _find(source, ["test-*.parquet", "*/test-*.parquet"])  # lmms-eval's copy
    if copy is not None:
        return {copy: None}
    if split == "test" and _find(source, ["test_question.json"]) is not None:
        raise KitInputError(f"{source}: MLVU test answers are withheld here: test_question.json has the questions "
                            f"only; give {MLVU_TEST_ANSWERS} (MLVU/MLVU_Test) or lmms-eval's copy (sy1998/MLVU_Test), "
                            f"else MLVU test is not reproducible without the answers")
    expected = (f"{MLVU_TEST_ANSWERS}, or lmms-eval's copy */test-*.parquet" if split == "test" else
                "json/<n>_<task>.json per task, or lmms-eval's copy mlvu/test-*.parquet")
    raise KitInputError(f"{source}: no MLVU {split} annotations here (expected {expected})")


def _mlvu_records(path: Path, split: str) -> list:
    records = _read_records(path, "MLVU")
    if not any(isinstance(r, dict) and "answer" in r for r in records):
        if split == "test":
            raise KitInputError(f"{path}: MLVU test answers are withheld: no item has an 'answer' (as in MLVU_Test's "
                                f"test_question.json, the questions only); give {MLVU_TEST_ANSWERS} (MLVU/MLVU_Test) "
                                f"or lmms-eval's copy (sy1998/MLVU_Test), else MLVU test is not reproducible without "
                                f"the answers")
        raise KitInputError(f"{path}: no item has an 'answer' (is this an MLVU annotation file?)")
    return records


def load_mlvu(annotation_dir_or_file, video_root, split: str = "dev", check_videos: bool = False,
              problems: list[str] | None = None) -> list[dict]:
    """MLVU's multiple-choice tasks, dev or test (module docstring: layouts); category: the task. An MLVU test file
    without answers (test_question.json) is a one-line error: MLVU test is not reproducible without them. With
    `problems`, bad records are listed there instead of raised."""
    if split not in ("dev", "test"):
        raise KitInputError(f"split {split!r}: expected 'dev' or 'test'")
    source, root = Path(annotation_dir_or_file), _root(video_root)
    items = []
    sources = _mlvu_sources(source, split)
    for path, task in sources.items():
        try:
            records = _mlvu_records(path, split)
        except KitInputError as err:
            if problems is None or len(sources) == 1:
                raise
            problems.append(str(err))  # one bad task file of the dev folder: the data check reads the others
            continue
        items += _collect(records, lambda i, r: _mlvu_item(path, i, r, task, root, split), problems)
    if check_videos:
        _check_videos(items, source, root)
    return items


# ---- LongVideoBench ----------------------------------------------------------------------------
LONGVIDEOBENCH_FILES = ("lvb_val.json", "validation-00000-of-00001.parquet", "*/validation-*.parquet")
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
_LVB_WITHHELD = "the paper reports the validation split: give lvb_val.json (or validation-00000-of-00001.parquet)"


def longvideobench_prompt(question: str, candidates: Sequence[str]) -> str:
    """The release's `longvideobench_doc_to_text` without interleaved subtitles (longvideobench_val_v;
    tasks/longvideobench/utils.py and longvideobench_val_v.yaml): question, "A. text" options one a line, then the
    post prompt (empty pre prompt)."""
    options = "\n".join(". ".join([OPTION_LETTERS[i], c]) for i, c in enumerate(candidates))
    return f"{question}\n{options}\n{LONGVIDEOBENCH_POST_PROMPT}"


def _longvideobench_candidates(path: Path, index: int, record: dict) -> list[str]:
    if "candidates" in record:  # lvb_val.json
        return _option_texts(path, index, record["candidates"], "candidates")
    if "option0" in record:  # the parquet: option0..option4, unused ones "N/A" (lmms-eval stops at the first)
        texts = [record.get(f"option{i}") for i in range(5)]
        return _option_texts(path, index, texts[:texts.index("N/A")] if "N/A" in texts else texts, "option0")
    raise KitInputError(f"{path}: item {index} has no field 'candidates' (lvb_val.json) or 'option0'..'option4' "
                        f"(the parquet) (is this a LongVideoBench annotation file?)")


def _longvideobench_item(path: Path, index: int, record, root: Path) -> dict:
    _object(path, index, record, "LongVideoBench")
    _require(path, index, record, ("question", "correct_choice", "video_path", "duration_group"), "LongVideoBench")
    question, video_path = _text(path, index, record, "question"), _text(path, index, record, "video_path")
    candidates = _longvideobench_candidates(path, index, record)
    choice = record["correct_choice"]
    # a bool is an int to Python: `true` would read as option B
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(candidates):
        raise KitInputError(f"{path}: item {index} correct_choice {choice!r} is not an index into its "
                            f"{len(candidates)} candidates")
    video = _first_existing([root / video_path, root / "videos" / video_path])  # `videos` or the folder holding it
    return _item("longvideobench", record["duration_group"], record.get("id", index), question,
                 _lettered(candidates), OPTION_LETTERS[choice], video, longvideobench_prompt(question, candidates),
                 record)


def load_longvideobench(annotation_file, video_root, check_videos: bool = False,
                        problems: list[str] | None = None) -> list[dict]:
    """LongVideoBench val (module docstring: layouts); category `duration_group`; `question_category`, `duration`
    etc. kept in `meta`. A file without answers (lvb_test_wo_gt.json) is a one-line error. With `problems`, bad
    records are listed there instead of raised."""
    path = _annotation_file(annotation_file, "LongVideoBench", LONGVIDEOBENCH_FILES,
                            {"lvb_test_wo_gt.json": _LVB_WITHHELD})
    root = _root(video_root)
    records = _read_records(path, "LongVideoBench")
    if not any(isinstance(r, dict) and "correct_choice" in r for r in records):
        raise KitInputError(f"{path}: no item has a 'correct_choice': answers withheld (as in lvb_test_wo_gt.json); "
                            f"{_LVB_WITHHELD}")
    items = _collect(records, lambda i, r: _longvideobench_item(path, i, r, root), problems)
    if check_videos:
        _check_videos(items, path, root)
    return items


# ---- MVBench -----------------------------------------------------------------------------------
# where each task's videos are, under MVBench's `video` folder (lmms-eval's DATA_LIST)
MVBENCH_VIDEO_FOLDERS = {
    "object_interaction": "star/Charades_segment",
    "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment",
    "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation",
    "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos",
    "object_shuffle": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "scene_transition": "scene_qa/video",
    "state_change": "perception/videos",
    "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4",
    "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation",
    "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}
MVBENCH_POST_PROMPT = "Only give the best option.\n"


def mvbench_prompt(question: str, candidates: Sequence[str]) -> str:
    """lmms-eval's `mvbench_doc_to_text` (lmms_eval/tasks/mvbench/utils.py): "Question:", "Option:" and
    "(A) text" lines, then the post prompt. Stored versions of the per-task yamls disagree on it: "Only give
    the best option.\\n" (e.g. mvbench_action_localization.yaml and mvbench_episodic_reasoning.yaml in the
    version whose template has the `revision: video` that lmms-eval PR #280 introduced) versus "Answer with
    the option's letter from the given choices directly." (e.g. an older mvbench_action_sequence.yaml; the
    versions are in docs/gpu.md, "Provenance of the benchmark loaders"). The first is taken as the newer, from
    that template, and used for every task; the stored files carry no dates to confirm it."""
    options = "".join(f"({OPTION_LETTERS[i]}) {c}\n" for i, c in enumerate(candidates))
    return "Question:" + question + "\nOption:\n" + options + MVBENCH_POST_PROMPT


def _mvbench_item(path: Path, index: int, record, root: Path) -> dict:
    _object(path, index, record, "MVBench")
    _require(path, index, record, ("video", "question", "candidates", "answer"), "MVBench")
    question, video_name = _text(path, index, record, "question"), _name(path, index, record, "video")
    candidates = _option_texts(path, index, record["candidates"], "candidates")
    if record["answer"] not in candidates:  # lmms-eval finds the letter of the candidate equal to the answer
        raise KitInputError(f"{path}: item {index} answer {record['answer']!r} is not one of its candidates")
    task = path.stem
    video = root / MVBENCH_VIDEO_FOLDERS.get(task, "") / video_name
    return _item("mvbench", task, f"{task}_{index}", question, _lettered(candidates),
                 OPTION_LETTERS[candidates.index(record["answer"])], video, mvbench_prompt(question, candidates), record)


def load_mvbench(annotation_dir, video_root, check_videos: bool = False, problems: list[str] | None = None) -> list[dict]:
    """MVBench from its published `json` folder (one `<task>.json` per task, e.g. action_sequence.json:
    `video`, `question`, `candidates`, `answer` as the correct candidate's text; `start`/`end` kept in
    `meta`), or one such task file. The category is the task (file stem). Videos are
    `<video_root>/<task folder>/<video>`, video_root being MVBench's `video` folder and the task folders
    lmms-eval's DATA_LIST (lmms_eval/tasks/mvbench/utils.py); a task it does not list reads
    `<video_root>/<video>`. With `problems`, bad records are listed there instead of raised."""
    source, root = Path(annotation_dir), _root(video_root)
    files = [source] if source.is_file() else _json_files(source, "MVBench")
    items = []
    for path in files:
        items += _collect(_read_records(path, "MVBench"), lambda i, r: _mvbench_item(path, i, r, root), problems)
    if check_videos:
        _check_videos(items, source, root)
    return items


# ---- answer parsing, per benchmark as lmms-eval does it -------------------------------------------
# lmms-eval's VideoMME prefix list, verbatim: two missing commas glue "The best option is" to "The correct
# option is" and "Best answer:" to "Best option:", so those four are not removed (kept for equal scores)
_VIDEOMME_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                      "The best option is" "The correct option is", "Best answer:" "Best option:")
_LONGVIDEOBENCH_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                            "The best option is", "The correct option is", "Best answer:", "Best option:")


def _first_letter_after_prefixes(text: str, prefixes: Sequence[str], letters: str) -> str | None:
    s = text.strip()
    for prefix in prefixes:
        s = s.replace(prefix, "")
    match = re.search(f"[{letters}]", s)  # also covers lmms-eval's ">10 words and no letter" early exit
    return match[0] if match else None


def parse_videomme(text: str) -> str | None:
    """The release's `extract_characters_regex` (tasks/videomme/utils.py): drop the answer prefixes, then the
    first capital A-D anywhere ("Answer: C" gives A, from "Answer")."""
    return _first_letter_after_prefixes(text, _VIDEOMME_PREFIXES, "ABCD")


def parse_longvideobench(text: str) -> str | None:
    """The release's `parse_multi_choice_response` (tasks/longvideobench/utils.py): as VideoMME with the full
    prefix list and A-E. Where it finds no letter lmms-eval picks a random option; here that is
    None, scored wrong (lmms-eval's expected accuracy is higher by 1/num_options per such answer)."""
    return _first_letter_after_prefixes(text, _LONGVIDEOBENCH_PREFIXES, "ABCDE")


def parse_mlvu(text: str) -> str | None:
    """The release's `extract_characters_regex` (tasks/mlvu/utils.py, mlvu_dev and mlvu_test alike): the character
    before the first ")" (the prompt ends with "Best option: ("), else the whole stripped text, which scores only
    when it is the bare letter ("The answer is B." scores wrong). (Later upstream lmms-eval takes the first capital
    A-D after the VideoMME prefixes instead; the release keeps this rule.)"""
    s = text.strip()
    return s[s.index(")") - 1:s.index(")")] if ")" in s else s


_MV_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: lmms-eval's lookahead, which never blocks a match
_MV_COMMA = re.compile(r"(\d)(\,)(\d)")
_MV_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_MV_OPTION = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)


def _mvbench_punctuation(text: str) -> str:
    out = text
    for p in _MV_PUNCT:
        if (p + " " in text or " " + p in text) or _MV_COMMA.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _MV_PERIOD.sub("", out, count=int(re.UNICODE))  # lmms-eval passes re.UNICODE (32) as the count


def parse_mvbench(text: str) -> str | None:
    """`process` inside `mcq_acc` of lmms_eval/tasks/mvbench/utils.py: "X. text" gives X;
    otherwise strip punctuation, lower-case, and take the first single-letter word a-e, case-insensitive
    ("Answer: C" gives C; note a stray article "a" gives A); else the processed text, which never scores."""
    match = _MV_OPTION.match(text.strip())
    if match:
        return match.group(1).upper()
    s = _mvbench_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    s = s.strip("'").strip('"').strip(")").strip("(").strip().lower()
    letter = re.search(r"\b([A-E])\b", s, re.IGNORECASE)
    return letter.group(1).upper() if letter else s


class _Registry(dict):
    """A dict whose unknown keys raise a one-line error naming the valid ones."""

    def __missing__(self, name):
        raise KitInputError(f"benchmark {name!r}: unknown; valid names are {', '.join(sorted(self))}")


BENCHMARKS: dict[str, Callable[..., list[dict]]] = _Registry({
    "videomme": load_videomme,
    "mlvu_dev": partial(load_mlvu, split="dev"),
    "mlvu_test": partial(load_mlvu, split="test"),
    "longvideobench": load_longvideobench,
    "mvbench": load_mvbench,
})
_PARSERS: dict[str, Callable[[str], str | None]] = _Registry({
    "videomme": parse_videomme,
    "mlvu_dev": parse_mlvu,
    "mlvu_test": parse_mlvu,
    "longvideobench": parse_longvideobench,
    "mvbench": parse_mvbench,
})


def parse_answer(benchmark: str, text: str, options: Sequence[str]) -> str | None:
    """The option letter lmms-eval would compare with the answer for `text`, or None where what lmms-eval
    extracts cannot equal any of the item's option letters (so scoring None as wrong gives lmms-eval's
    accuracy; LongVideoBench's random fallback aside, see parse_longvideobench)."""
    extracted = _PARSERS[benchmark](text)
    return extracted if extracted in tuple(OPTION_LETTERS[:len(options)]) else None


def accuracy_by_category(items: Sequence[dict], predicted_letters: Sequence[str | None]) -> pd.DataFrame:
    """Accuracy (fraction correct) per benchmark and category, then per benchmark "overall" (all its items:
    lmms-eval's VideoMME, LongVideoBench and MVBench score) and "mean over categories" (the unweighted mean of
    its categories: lmms-eval's MLVU score, M-Avg; lmms-eval divides by its fixed task list, so a task with
    no items counts 0 there). Columns: benchmark, category, n, correct, accuracy. A prediction of None is
    wrong. (lmms-eval's MVBench leaves empty generations out of the count; here they are wrong.)"""
    if len(items) != len(predicted_letters):
        raise KitInputError(f"predicted_letters: {len(predicted_letters)} predictions for {len(items)} items")
    frame = pd.DataFrame({
        "benchmark": [item.get("benchmark", "unknown") for item in items],
        "category": [str(item.get("category", "all")) for item in items],
        "correct": [int(pred is not None and pred == answer_letter(item)) for item, pred in zip(items, predicted_letters)],
    })
    rows = []
    for benchmark, group in frame.groupby("benchmark", sort=False):
        per_category = group.groupby("category", sort=False)["correct"].agg(["size", "sum", "mean"])
        rows += [(benchmark, category, int(r["size"]), int(r["sum"]), float(r["mean"]))
                 for category, r in per_category.iterrows()]
        n, correct = len(group), int(group["correct"].sum())
        rows.append((benchmark, "overall", n, correct, correct / n))
        rows.append((benchmark, "mean over categories", n, correct, float(per_category["mean"].mean())))
    return pd.DataFrame(rows, columns=["benchmark", "category", "n", "correct", "accuracy"])


# ---- videos ------------------------------------------------------------------------------------
def _open_video(path):
    """(decord reader, frame count) of `path`; a missing or unreadable file is a one-line KitInputError."""
    import decord  # imported here: decord is heavy and only the readers need it

    path = Path(path)
    if not path.is_file():
        raise KitInputError(f"{path}: video file not found")
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        return reader, len(reader)
    except Exception as err:  # decord raises its own DECORDError / RuntimeError for unreadable files
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise KitInputError(f"{path}: cannot decode video ({reason})") from None


def read_benchmark_video(path, num_frames: int) -> np.ndarray:
    """`num_frames` frames of a benchmark video as uint8 `(num_frames, H, W, 3)` RGB, sampled as the release's
    lmms-eval does (`LlavaHf.load_video`: decord, `np.linspace(0, total - 1, num_frames, dtype=int)`, i.e.
    video_io.uniform_frame_indices): a video with fewer frames than asked gets some frames repeated, as there,
    instead of video_io.read_video's error. A missing, undecodable or frameless video is a one-line
    KitInputError naming the file."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise KitInputError(f"num_frames: {num_frames!r} must be a whole number, at least 1")
    reader, total = _open_video(path)
    if total == 0:  # linspace(0, -1) would ask for frame -1
        raise KitInputError(f"{path}: video has no frames")
    try:
        return reader.get_batch(list(uniform_frame_indices(total, int(num_frames)))).asnumpy()
    except Exception as err:  # a file whose header decodes but whose frames do not
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise KitInputError(f"{path}: cannot decode the video's frames ({reason})") from None


# ---- checking a user's data before any GPU time ----------------------------------------------------
def _video_problems(annotations, video_root, items: list[dict]) -> list[str]:
    """One line per video that is missing, undecodable or frameless (decord opens each once and reads only its
    frame count), naming the first item that uses it; when none of the videos is there, one line."""
    users = defaultdict(list)
    for item in items:
        users[item["path"]].append(item["problem_id"])
    if users and not any(Path(p).is_file() for p in users):
        first = next(iter(users))
        return [f"{annotations}: none of its {len(users)} videos is in {video_root} (the first expected: {first}); "
                f"is video_root the benchmark's video folder?"]
    problems = []
    for video, ids in users.items():
        also = f" (and {len(ids) - 1} more items use it)" if len(ids) > 1 else ""
        if not Path(video).is_file():
            problems.append(f"{annotations}: item {ids[0]}: video not found: {video}{also}")
            continue
        try:
            _, total = _open_video(video)
        except KitInputError as err:
            problems.append(f"{annotations}: item {ids[0]}: {err}{also}")
            continue
        if total == 0:
            problems.append(f"{annotations}: item {ids[0]}: {video}: video has no frames{also}")
    return problems


def _duplicate_ids(annotations, items: list[dict]) -> list[str]:
    counts = Counter(item["problem_id"] for item in items)
    return [f"{annotations}: item {pid}: duplicate problem id ({n} items have it)" for pid, n in counts.items() if n > 1]


def check_benchmark_data(benchmarks: dict, num_frames: int) -> list[str]:
    """Check a user's benchmark data before any GPU time: `benchmarks` is params' `benchmarks:` block
    (name -> {annotations, video_root}). One line per problem, `file: item id: what is wrong` (or `file: what is
    wrong`): an unknown benchmark, a missing key, a `/path/to` placeholder, a missing or unreadable annotation file,
    a layout that matches none known, withheld answers, each record that cannot be read (a missing or misspelled
    field, an answer not among its options), duplicate problem ids, and each missing, undecodable or frameless video.
    [] when all is well. A video shorter than `num_frames` is fine: read_benchmark_video repeats frames, as the
    release does."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        return [f"num_frames: {num_frames!r} must be a whole number, at least 1"]
    if not isinstance(benchmarks, dict) or not benchmarks:
        return [f"benchmarks: expected a mapping of benchmark name -> {{annotations, video_root}}, got {benchmarks!r}"]
    problems = []
    for name, entry in benchmarks.items():
        if name not in BENCHMARKS:
            problems.append(f"benchmarks.{name}: not a benchmark; valid: {', '.join(sorted(BENCHMARKS))}")
            continue
        if not isinstance(entry, dict):
            problems.append(f"benchmarks.{name}: expected {{annotations, video_root}}, got {entry!r}")
            continue
        entry_problems = []
        for key in ("annotations", "video_root"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                entry_problems.append(f"benchmarks.{name}.{key}: missing (the benchmark's "
                                      f"{'annotation file or folder' if key == 'annotations' else 'video folder'})")
            elif PLACEHOLDER in value:
                entry_problems.append(f"{value}: benchmarks.{name}.{key} is still a placeholder; set it to where the "
                                      f"data is")
        entry_problems += [f"benchmarks.{name}: unknown key {k!r} (expected annotations, video_root)"
                           for k in entry if k not in ("annotations", "video_root")]
        if entry_problems:
            problems += entry_problems
            continue
        annotations, video_root = Path(entry["annotations"]).expanduser(), Path(entry["video_root"]).expanduser()
        if not video_root.is_dir():
            problems.append(f"{video_root}: video folder not found (benchmarks.{name}.video_root)")
            continue
        record_problems: list[str] = []
        try:
            items = BENCHMARKS[name](annotations, video_root, problems=record_problems)
        except KitInputError as err:  # the file itself: missing, unreadable, unknown layout, withheld answers
            problems.append(str(err))
            continue
        problems += record_problems
        if not items and not record_problems:
            problems.append(f"{annotations}: no {name} items in it")
        problems += _duplicate_ids(annotations, items)
        problems += _video_problems(annotations, video_root, items)
    return problems
