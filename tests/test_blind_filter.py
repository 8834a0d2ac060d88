"""Blind filtering of Video-R1 data for a real model: no frame is read, the no-video answer is the one an all-false
keep mask gives on a real video, the filtered JSON holds exactly the items answered wrong, killed runs resume."""
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import QWEN_FRAME

from cacovid_lib.data.schema import OPTION_LETTERS
from cacovid_lib.data.video_r1 import load_video_r1, policy_question, read_media
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models.loader import chat_template, load_video_llm
from cacovid_lib.cli import blind_filter as bf

NUM_FRAMES = 4


def _vlm(backend_dir, backend):
    vlm = load_video_llm(backend_dir, NUM_FRAMES, frame_size=QWEN_FRAME if backend == "qwen" else None)
    vlm.prompt_template = chat_template(vlm)
    return vlm


@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_blind_answer_equals_a_real_video_with_every_token_dropped(backend, request, video_r1):
    vlm = _vlm(request.getfixturevalue(f"{backend}_dir"), backend)
    json_file, media_root = video_r1
    items = load_video_r1(json_file, media_root, data_types="video")
    task = bf.BlindVideoR1Task(vlm, items, reward="multiple_choice")
    prompts = [vlm.prompt(dict(it, problem=policy_question(it))) for it in items[:2]]
    real = torch.stack([vlm.encode_video(vlm.preprocess(read_media(it, NUM_FRAMES))[None])[0] for it in items[:2]])
    none = torch.zeros(2, vlm.num_video_tokens, dtype=torch.bool)
    blind = vlm.option_logprobs(prompts, task.item_video_embeds([0, 1]), none)  # (2, options)
    torch.testing.assert_close(blind, vlm.option_logprobs(prompts, real, none))
    some = none.clone()
    some[:, :3] = True  # a few real tokens do change the answer's scores: the comparison can fail
    assert not torch.allclose(blind, vlm.option_logprobs(prompts, real, some))


def test_filtered_json_holds_the_items_answered_wrong_and_no_frame_is_read(llava_dir, video_r1, tmp_path, monkeypatch):
    vlm = _vlm(llava_dir, "llava")
    json_file, media_root = video_r1
    items = load_video_r1(json_file, media_root, data_types="video")
    task = bf.BlindVideoR1Task(vlm, items, reward="multiple_choice")
    letters = [OPTION_LETTERS[int(i)] for i in vlm.option_logprobs(task.prompts, task.item_video_embeds(range(4)),
                                                             torch.zeros(4, vlm.num_video_tokens, dtype=torch.bool)).argmax(-1)]
    # items 0 and 2 have the blind answer as their solution (dropped), 1 and 3 another letter (kept)
    raw = json.loads(json_file.read_text())
    for n in range(4):
        right = letters[n] if n % 2 == 0 else next(x for x in "ABCD" if x != letters[n])
        raw[n]["solution"] = f"<answer>{right}</answer>"
    (media_root / "blind.json").write_text(json.dumps(raw))
    monkeypatch.setattr("cacovid_lib.data.video_r1.read_media", lambda *a: pytest.fail("a frame was read"))
    out = tmp_path / "filtered.json"
    summary = bf.blind_filter_video_r1(llava_dir, media_root / "blind.json", media_root, out, NUM_FRAMES,
                                       reward="multiple_choice", batch_size=3, progress=False)
    assert summary["items"] == 4 and summary["kept"] == 2 and summary["dropped"] == 2
    kept = json.loads(out.read_text())
    assert [it["problem_id"] for it in kept] == [1, 3] and kept[0] == raw[1]  # the schema read, unchanged
    rewards = [json.loads(line) for line in out.with_suffix(".blind.jsonl").read_text().splitlines()]
    assert [(r["index"], r["blind_reward"]) for r in rewards] == [(0, 1.0), (1, 0.0), (2, 1.0), (3, 0.0)]


def test_a_killed_run_resumes_and_another_runs_file_is_refused(llava_dir, video_r1, tmp_path, monkeypatch):
    vlm = _vlm(llava_dir, "llava")
    json_file, media_root = video_r1
    items = load_video_r1(json_file, media_root, data_types="video")
    whole = bf.blind_rewards(vlm, items, tmp_path / "whole.jsonl", "multiple_choice", batch_size=2, progress=False)
    calls = []
    reward_fn = bf.BlindVideoR1Task.reward_fn

    def dies_on_the_second_batch(self, idx, inputs, masks):
        calls.append(list(idx))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return reward_fn(self, idx, inputs, masks)

    monkeypatch.setattr(bf.BlindVideoR1Task, "reward_fn", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        bf.blind_rewards(vlm, items, tmp_path / "cut.jsonl", "multiple_choice", batch_size=2, progress=False)
    assert len((tmp_path / "cut.jsonl").read_text().splitlines()) == 2  # the first batch was kept
    resumed = bf.blind_rewards(vlm, items, tmp_path / "cut.jsonl", "multiple_choice", batch_size=2, progress=False)
    assert calls == [[0, 1], [2, 3], [2, 3]] and np.array_equal(resumed, whole)
    with pytest.raises(KitInputError, match="holds another run \\(reward 'multiple_choice', this run 'generation'\\)"):
        bf.blind_rewards(vlm, items, tmp_path / "cut.jsonl", "generation", progress=False)
    with pytest.raises(KitInputError, match="cut.jsonl: holds another item list \\(item 0 is problem 0\\)"):
        bf.blind_rewards(vlm, items[1:], tmp_path / "cut.jsonl", "multiple_choice", progress=False)


def test_command_line_with_the_generation_reward_on_qwen_and_bad_input(qwen_dir, video_r1, tmp_path, capsys):
    json_file, media_root = video_r1
    params = {"num_frames": NUM_FRAMES, "models": {"tiny_qwen": {"path": str(qwen_dir), "frame_size": list(QWEN_FRAME)}},
              "policy": {"reward": "generation", "video_r1": {"media_root": str(media_root)}},
              "blind_filter": {"json": str(json_file), "out": str(tmp_path / "filtered.json"), "batch_size": 4}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert bf.main(["--params", str(tmp_path / "params.yaml"), "--model", "tiny_qwen"]) == 0
    assert "of 4 video items" in capsys.readouterr().out
    rewards = [json.loads(line) for line in (tmp_path / "filtered.blind.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rewards] == [0, 1, 2, 3] and {r["blind_reward"] for r in rewards} <= {0.0, 1.0}
    kept = json.loads((tmp_path / "filtered.json").read_text())
    assert [it["problem_id"] for it in kept] == [r["problem_id"] for r in rewards if r["blind_reward"] < 1]
    for argv, message in ([["--model", str(qwen_dir)], "--video-r1: required"],
                          [["--params", str(tmp_path / "none.yaml"), "--model", "x"], "none.yaml: file not found"],
                          [["--params", str(tmp_path / "params.yaml"), "--model", "tiny_qwen", "--correct-at", "2"],
                           "correct_at: 2.0, expected a reward in (0, 1]"]):
        assert bf.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("flag, message", [("--correct-at", "correct_at: 0.0, expected a reward in (0, 1]"),
                                           ("--batch-size", "--batch-size: 0, expected a whole number of at least 1"),
                                           ("--num-frames", "--num-frames: 0, expected a whole number of at least 1")])
def test_a_zero_flag_is_refused_not_taken_for_its_default(flag, message, tmp_path, capsys):
    params = {"num_frames": NUM_FRAMES, "blind_filter": {"batch_size": 4, "correct_at": 1.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["--params", str(tmp_path / "params.yaml"), "--model", "none", "--video-r1", str(tmp_path / "none.json"),
            "--media-root", str(tmp_path), "--out", str(tmp_path / "out.json"), flag, "0"]
    assert bf.main(argv) == 2  # refused before any file or model is read
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
