"""Real video-QA benchmarks read from their local annotation files, prompted and scored as lmms-eval does.

One job: turn each benchmark's published annotation file into the kit's Video-R1 style items, and turn a
model's free-text answer into the option letter lmms-eval would score, so that accuracies are comparable
with the CaCoVID paper's (LLaVA-OneVision-7B through lmms-eval on VideoMME, MLVU dev/test,
LongVideoBench val; MVBench as well).

Every item has the kit's fields (`problem_id`, `problem`, `options` as ["A. ...", ...], `solution`
"<answer>X</answer>", absolute video `path`, `data_type`, `problem_type`) plus `benchmark` (a key of
BENCHMARKS), `category` (what lmms-eval breaks the score down by: VideoMME duration, MLVU task,
LongVideoBench duration group, MVBench task), `prompt` (lmms-eval's full question text for LLaVA-OneVision,
i.e. its `default` prompt kwargs) and `meta` (the annotation record as read).

The lmms-eval files followed are those stored for EvolvingLMMs-Lab/lmms-eval; which file at which commit each
loader follows is tabled in docs/gpu.md, "Provenance of the benchmark loaders". Where stored versions disagree,
the choice is said in the docstring that makes it.
"""
from __future__ import annotations

import importlib.util
import json
import re
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from cacovid_lib.data.schema import OPTION_LETTERS, answer_letter
from cacovid_lib.io_utils import KitInputError, read_json


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


def _read_records(path, title: str) -> list[dict]:
    """The list of annotation records in a JSON or parquet file, each checked to be an object."""
    path = Path(path)
    if not path.is_file():
        raise KitInputError(f"{path}: file not found")
    records = _read_parquet(path) if path.suffix == ".parquet" else read_json(path)
    if not isinstance(records, list):
        raise KitInputError(f"{path}: expected a list of {title} items, got a JSON {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise KitInputError(f"{path}: item {index} is not an object (is this a {title} annotation file?)")
    return records


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
    # first (so check_videos reports the expected place)
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
VIDEOMME_OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video and "
                          "the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
VIDEOMME_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def videomme_prompt(question: str, options: Sequence[str]) -> str:
    """lmms-eval's `videomme_doc_to_text` (lmms_eval/tasks/videomme/utils.py): option prompt, question, the
    published "A. ..." options one a line, then the post prompt of `videomme.yaml`'s `default` kwargs. The
    stored lmms-eval copy of videomme.yaml is an odd variant (dataset Video-MME_from_url, old
    `model_specific_prompt_kwargs`); the post prompt here is the `default` one of the lmms-eval videomme.yaml
    found identically in several lmms-eval forks (docs/gpu.md, "Provenance of the benchmark loaders"). Its
    leading newline is kept, so the prompt has an empty line before it, as in lmms-eval."""
    return VIDEOMME_OPTION_PROMPT + "\n" + question + "\n" + "\n".join(options) + "\n" + VIDEOMME_POST_PROMPT


def load_videomme(annotation_file, video_root, check_videos: bool = False) -> list[dict]:
    """VideoMME from its published annotation (lmms-lab/Video-MME `videomme/test-00000-of-00001.parquet`, or
    the same records as a JSON list): fields `videoID`, `duration` (short/medium/long, the category),
    `question`, `options` (["A. ...", ...]), `answer` (a letter), and `question_id`, `task_type`, `domain`,
    `sub_category` kept in `meta`. Videos are `<video_root>/<videoID>.mp4` (or .MP4/.mkv), as in lmms-eval's
    `videomme_doc_to_visual` (lmms_eval/tasks/videomme/utils.py), video_root being its
    `videomme/data` folder."""
    path, root = Path(annotation_file), _root(video_root)
    items = []
    for index, record in enumerate(_read_records(path, "VideoMME")):
        _require(path, index, record, ("videoID", "duration", "question", "options", "answer"), "VideoMME")
        question, video_id = _text(path, index, record, "question"), _name(path, index, record, "videoID")
        duration = _text(path, index, record, "duration")
        options = _option_texts(path, index, record["options"], "options")
        answer = _letter_answer(path, index, record["answer"], len(options))
        video = _first_existing([root / f"{video_id}{ext}" for ext in (".mp4", ".MP4", ".mkv")])
        items.append(_item("videomme", duration, record.get("question_id", index), question,
                           _lettered(options), answer, video, videomme_prompt(question, options), record))
    if check_videos:
        _check_videos(items, path, root)
    return items


# ---- MLVU --------------------------------------------------------------------------------------
# MLVU's published dev json names the needle task "findNeedle"; lmms-eval's dev task list calls it "needle"
MLVU_TASK_ALIASES = {"findNeedle": "needle"}
MLVU_GENERATION_TASKS = ("sub_scene", "summary")  # open-ended MLVU tasks, not in lmms-eval's mlvu_dev/mlvu_test
_EMBEDDED_OPTION = re.compile(r"^\(?([A-Z])[).]\s*(.*)$")  # "(A) text", also "A. text" / "A) text"


def mlvu_prompt(question_with_options: str) -> str:
    """lmms-eval's `mlvu_doc_to_text` (lmms_eval/tasks/mlvu/utils.py, the version with mlvu_dev/mlvu_test):
    the question field, which holds the options, then "Only give the best option." and
    the answer primer "Best option: (". It ignores the yaml's prompt kwargs."""
    return "\n" + question_with_options + "\nOnly give the best option.\n" + "\n" + "Best option: ("


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
    # the published json gives the answer's text, lmms-eval's HF copy its letter
    text = str(answer) if isinstance(answer, (int, float)) else answer
    if text in options:
        return OPTION_LETTERS[options.index(text)]
    if isinstance(answer, str) and answer.strip() in OPTION_LETTERS[:len(options)] and answer.strip():
        return answer.strip()
    raise KitInputError(f"{path}: item {index} answer {answer!r} is neither one of its candidates nor an option letter")


def _mlvu_item(path: Path, index: int, record: dict, task_from_file: str | None, root: Path, split: str) -> dict:
    _require(path, index, record, ("question", "answer"), "MLVU")
    video_field = "video" if "video" in record else "video_name"
    if record.get(video_field) is None:
        raise KitInputError(f"{path}: item {index} has no field 'video' (is this an MLVU annotation file?)")
    video_name = _name(path, index, record, video_field)
    task = record.get("question_type", record.get("task_type", task_from_file))
    if task is None:
        raise KitInputError(f"{path}: item {index} has no field 'question_type' (is this an MLVU annotation file?)")
    task = MLVU_TASK_ALIASES.get(task, task)
    stem, options, embedded = _mlvu_options(path, index, record)
    answer = _mlvu_answer(path, index, record["answer"], options)
    # lmms-eval's question field carries the options as "(A) ..." lines, MLVU's own template writes them so too
    question = (str(record["question"]) if embedded
                else stem + "".join(f"\n({OPTION_LETTERS[i]}) {o}" for i, o in enumerate(options)))
    folders = [path.stem, task] if task_from_file else []  # published layout: video/<json stem>/<video>
    video = _first_existing([root / f / video_name for f in folders] + [root / video_name])
    problem_id = record.get("question_id", f"mlvu_{split}_{task}_{index}")
    return _item(f"mlvu_{split}", task, problem_id, stem, _lettered(options), answer, video, mlvu_prompt(question), record)


def load_mlvu(annotation_dir_or_file, video_root, split: str = "dev", check_videos: bool = False) -> list[dict]:
    """MLVU multiple-choice tasks, from either
    - the published folder of per-task json files (MLVU dev `MLVU/json/1_plotQA.json`, ...: `video`,
      `question`, `candidates`, `answer` as the correct candidate's text, `question_type`; the open-ended
      8_sub_scene/9_summary files are skipped, as lmms-eval has only the multiple-choice tasks), or
    - one file (JSON list, or parquet when pyarrow is installed) of such records, or of lmms-eval's HF copy
      (sy1998/MLVU_dev, MLVU_Test: `video_name`, `question` with the options as "(A) ..." lines, `candidates`,
      `answer` as a letter, `task_type`), e.g. MLVU_Test's `test_question.json` with its answers added.
    The category is the task. Videos: `<video_root>/<json stem or task>/<video>` when there, else
    `<video_root>/<video>`. Prompt and parsing: lmms_eval/tasks/mlvu/utils.py and
    mlvu_dev.yaml / mlvu_test.yaml. How lmms-eval's HF copy writes the options inside `question` is not in
    the stored files; "(A) text" lines follow MLVU's own template (JUNJIE99/MLVU Evaluation_Test/test_bench.py)."""
    if split not in ("dev", "test"):
        raise KitInputError(f"split {split!r}: expected 'dev' or 'test'")
    source, root = Path(annotation_dir_or_file), _root(video_root)
    if source.is_dir():
        files = [f for f in _json_files(source, "MLVU") if not f.stem.endswith(MLVU_GENERATION_TASKS)]
        if not files:
            raise KitInputError(f"{source}: only open-ended MLVU tasks here, no multiple-choice task .json files")
        tasks = {f: re.sub(r"^\d+_", "", f.stem) for f in files}  # "1_plotQA" -> "plotQA"
    else:
        files, tasks = [source], {source: None}
    items = [_mlvu_item(f, index, record, tasks[f], root, split)
             for f in files for index, record in enumerate(_read_records(f, "MLVU"))]
    if check_videos:
        _check_videos(items, source, root)
    return items


# ---- LongVideoBench ----------------------------------------------------------------------------
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"


def longvideobench_prompt(question: str, candidates: Sequence[str]) -> str:
    """lmms-eval's `longvideobench_doc_to_text` without interleaved subtitles (the `longvideobench_val_v`
    task; lmms_eval/tasks/longvideobench/utils.py and longvideobench_val_v.yaml):
    question, "A. text" options one a line, then the post prompt (empty pre prompt)."""
    options = "\n".join(". ".join([OPTION_LETTERS[i], c]) for i, c in enumerate(candidates))
    return f"{question}\n{options}\n{LONGVIDEOBENCH_POST_PROMPT}"


def _longvideobench_candidates(path: Path, index: int, record: dict) -> list[str]:
    if "candidates" in record:  # the published lvb_val.json
        return _option_texts(path, index, record["candidates"], "candidates")
    if "option0" in record:  # the HF parquet: option0..option4, unused ones "N/A"
        texts = [record.get(f"option{i}") for i in range(5)]
        return _option_texts(path, index, texts[:texts.index("N/A")] if "N/A" in texts else texts, "option0")
    raise KitInputError(f"{path}: item {index} has no field 'candidates' (is this a LongVideoBench annotation file?)")


def load_longvideobench(annotation_file, video_root, check_videos: bool = False) -> list[dict]:
    """LongVideoBench from its published `lvb_val.json` (or the HF validation parquet, same records with
    option0..option4): `id`, `question`, `candidates`, `correct_choice` (an index), `video_path`,
    `duration_group` (the category), and `question_category`, `duration` etc. kept in `meta`. Videos are
    `<video_root>/<video_path>`, video_root being LongVideoBench's `videos` folder, as in lmms-eval's
    `longvideobench_doc_to_visual_v` (lmms_eval/tasks/longvideobench/utils.py)."""
    path, root = Path(annotation_file), _root(video_root)
    items = []
    for index, record in enumerate(_read_records(path, "LongVideoBench")):
        _require(path, index, record, ("question", "correct_choice", "video_path", "duration_group"), "LongVideoBench")
        question, video_path = _text(path, index, record, "question"), _text(path, index, record, "video_path")
        candidates = _longvideobench_candidates(path, index, record)
        choice = record["correct_choice"]
        # a bool is an int to Python: `true` would read as option B
        if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(candidates):
            raise KitInputError(f"{path}: item {index} correct_choice {choice!r} is not an index into its "
                                f"{len(candidates)} candidates")
        items.append(_item("longvideobench", record["duration_group"], record.get("id", index), question,
                           _lettered(candidates), OPTION_LETTERS[choice], root / video_path,
                           longvideobench_prompt(question, candidates), record))
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


def _mvbench_item(path: Path, index: int, record: dict, root: Path) -> dict:
    _require(path, index, record, ("video", "question", "candidates", "answer"), "MVBench")
    question, video_name = _text(path, index, record, "question"), _name(path, index, record, "video")
    candidates = _option_texts(path, index, record["candidates"], "candidates")
    if record["answer"] not in candidates:  # lmms-eval finds the letter of the candidate equal to the answer
        raise KitInputError(f"{path}: item {index} answer {record['answer']!r} is not one of its candidates")
    task = path.stem
    video = root / MVBENCH_VIDEO_FOLDERS.get(task, "") / video_name
    return _item("mvbench", task, f"{task}_{index}", question, _lettered(candidates),
                 OPTION_LETTERS[candidates.index(record["answer"])], video, mvbench_prompt(question, candidates), record)


def load_mvbench(annotation_dir, video_root, check_videos: bool = False) -> list[dict]:
    """MVBench from its published `json` folder (one `<task>.json` per task, e.g. action_sequence.json:
    `video`, `question`, `candidates`, `answer` as the correct candidate's text; `start`/`end` kept in
    `meta`), or one such task file. The category is the task (file stem). Videos are
    `<video_root>/<task folder>/<video>`, video_root being MVBench's `video` folder and the task folders
    lmms-eval's DATA_LIST (lmms_eval/tasks/mvbench/utils.py); a task it does not list reads
    `<video_root>/<video>`."""
    source, root = Path(annotation_dir), _root(video_root)
    files = [source] if source.is_file() else _json_files(source, "MVBench")
    items = [_mvbench_item(f, index, record, root)
             for f in files for index, record in enumerate(_read_records(f, "MVBench"))]
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
    """`extract_characters_regex` of lmms_eval/tasks/videomme/utils.py: drop the answer prefixes, then the first
    capital A-D anywhere ("Answer: C" gives A, from "Answer")."""
    return _first_letter_after_prefixes(text, _VIDEOMME_PREFIXES, "ABCD")


def parse_longvideobench(text: str) -> str | None:
    """`parse_multi_choice_response` of lmms_eval/tasks/longvideobench/utils.py: as VideoMME
    with the full prefix list and A-E. Where it finds no letter lmms-eval picks a random option; here that is
    None, scored wrong (lmms-eval's expected accuracy is higher by 1/num_options per such answer)."""
    return _first_letter_after_prefixes(text, _LONGVIDEOBENCH_PREFIXES, "ABCDE")


def parse_mlvu(text: str) -> str | None:
    """`extract_characters_regex` of lmms_eval/tasks/mlvu/utils.py: the character before the
    first ")" (the prompt ends with "Best option: ("), else the whole stripped text, which scores only when
    it is the bare letter ("The answer is B." scores wrong)."""
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
