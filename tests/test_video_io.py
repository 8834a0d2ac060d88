"""Videos are read with decord; bad videos give one clear line naming the file."""
import numpy as np
import pytest

from cacovid_lib.data.video_io import read_video, uniform_frame_indices, write_video
from cacovid_lib.io_utils import KitInputError


def test_roundtrip_and_uniform_sampling(tmp_path):
    frames = np.zeros((16, 32, 32, 3), np.uint8)
    for f in range(16):
        frames[f, :, :, 0] = f * 15  # red channel encodes the frame index
    write_video(tmp_path / "v.mp4", frames)
    out = read_video(tmp_path / "v.mp4", 4)
    assert out.shape == (4, 32, 32, 3)
    assert list(uniform_frame_indices(16, 4)) == [0, 5, 10, 15]
    assert np.allclose(out[:, 16, 16, 0], [0, 75, 150, 225], atol=6)


def test_missing_video(tmp_path):
    with pytest.raises(KitInputError, match="nope.mp4: video file not found"):
        read_video(tmp_path / "nope.mp4", 8)


def test_corrupt_video(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(KitInputError, match="bad.mp4: cannot decode video") as err:
        read_video(tmp_path / "bad.mp4", 8)
    assert "\n" not in str(err.value)


def test_too_few_frames(tmp_path):
    write_video(tmp_path / "short.mp4", np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(KitInputError, match="short.mp4: video has 3 frames, 8 were requested"):
        read_video(tmp_path / "short.mp4", 8)
