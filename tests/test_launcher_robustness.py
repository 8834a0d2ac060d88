"""The launcher on Video-R1 under two processes (CPU, gloo): a video shorter than num_frames is read with repeated
frames and an unreadable one is replaced by the next readable item, so neither crashes a process nor hangs the
other; both counts reach the log, and the health CSV, its figure and the training history are in the policy folder."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT

from cacovid_lib.data.video_io import read_video, uniform_frame_indices, write_video
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.train_loop import PolicyTrainConfig, item_batches

NUM_FRAMES = 4


def test_item_batches_refuse_a_split_smaller_than_one_batch():
    cfg = PolicyTrainConfig(steps=4, items_per_step=2, num_iter_for_item=2)
    with pytest.raises(KitInputError, match=r"items: 3 items are fewer than one batch \(2 per step x 2 processes = 4\)"):
        item_batches(3, cfg, 0, 2)
    assert len(item_batches(4, cfg, 1, 2)) == 2  # steps / num_iter_for_item batches of one item each


def test_a_short_video_reads_with_repeated_frames_only_when_allowed(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "short.mp4", frames)
    with pytest.raises(KitInputError, match="video has 3 frames, 4 were requested"):
        read_video(tmp_path / "short.mp4", 4)
    assert read_video(tmp_path / "short.mp4", 4, allow_short=True).shape == (4, 32, 32, 3)
    assert list(uniform_frame_indices(3, 4)) == [0, 0, 1, 2]


def test_two_processes_survive_a_short_and_an_unreadable_video(tmp_path, llava_dir, video_r1):
    json_file, media_root = video_r1
    root = tmp_path / "media"
    shutil.copytree(media_root, root)
    write_video(root / "videos/v1.mp4", np.zeros((2, 32, 32, 3), dtype=np.uint8))  # 2 frames < NUM_FRAMES
    (root / "videos/v2.mp4").write_bytes(b"not a video")
    params = {"num_frames": NUM_FRAMES, "policy": {"reward": "multiple_choice", "train": {
        "steps": 4, "items_per_step": 1, "num_generations": 4, "num_iter_for_item": 2, "lr": 0.01, "seed": 0}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cacovid_lib.cli.launch_policy_training",
           "--params", str(tmp_path / "params.yaml"), "--model", str(llava_dir), "--video-r1", str(root / "train.json"),
           "--media-root", str(root), "--out", str(tmp_path / "policy")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    # 2 batches x 2 processes x 1 item: every video comes up once, so both bad ones do
    assert "video-r1: 1 short videos read with repeated frames, 1 unreadable videos skipped" in run.stderr, run.stderr[-3000:]
    out = tmp_path / "policy"
    assert json.loads((out / "policy_config.json").read_text())["step"] == 4
    with (out / "training_health.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert {"reward_token", "entropy_token", "clip_high", "zero_spread_all", "kl_token", "grad_norm", "sample_rate",
            "kept_tokens", "seconds_per_step"} <= set(rows[0])
    assert (out / "training_health.png").stat().st_size > 0
    history = torch.load(out / "training_history.pt", weights_only=False)["state"]
    assert history["step"] == 4 and len(history["history"]) == 4
    assert not (out / "trainer_state.pt").exists()  # moved aside: --resume starts afresh
