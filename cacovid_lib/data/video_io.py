"""Read videos with decord (uniform frame sampling) and write them with PyAV."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cacovid_lib.io_utils import KitInputError, atomic_path


def uniform_frame_indices(num_total: int, num_frames: int) -> np.ndarray:
    """The frame indices lmms-eval and Video-R1 sample: `linspace(0, n-1, num_frames)` floored."""
    return np.linspace(0, num_total - 1, num_frames, dtype=int)


def read_video(path, num_frames: int, allow_short: bool = False) -> np.ndarray:
    """Decode `num_frames` uniformly spaced frames of `path` as uint8 `(t, H, W, 3)` RGB. A video with fewer frames
    is an error unless `allow_short`: then its frames are sampled with repeats (`uniform_frame_indices`), still t,
    as the release samples a short clip from the frames it has."""
    import decord  # imported here: decord is heavy and only the readers need it

    path = Path(path)
    if not path.is_file():
        raise KitInputError(f"{path}: video file not found")
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        num_total = len(reader)
    except Exception as err:  # decord raises its own DECORDError for unreadable files
        raise KitInputError(f"{path}: cannot decode video ({str(err).splitlines()[0][:120]})") from None
    if num_total == 0 or (num_total < num_frames and not allow_short):
        raise KitInputError(f"{path}: video has {num_total} frames, {num_frames} were requested")
    try:  # a short video's indices repeat frames (floor of linspace), as many as requested
        frames = reader.get_batch(list(uniform_frame_indices(num_total, num_frames))).asnumpy()
    except Exception as err:  # a file whose header reads but whose frames do not decode
        raise KitInputError(f"{path}: cannot decode video ({str(err).splitlines()[0][:120]})") from None
    return frames  # (t, H, W, 3)


def write_video(path, frames: np.ndarray, fps: int = 8, crf: int = 12) -> None:
    """Encode uint8 `(T, H, W, 3)` RGB frames as an H.264 MP4, atomically."""
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "ultrafast", "threads": "1"}  # x264 splits frames by thread
            # count, and its output with them: one thread gives the same bytes on any machine
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
