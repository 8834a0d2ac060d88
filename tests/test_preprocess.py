"""Frame preprocessing matches the transformers PIL-backend processors, without torchvision.

References (the ones that run here without torchvision): `LlavaOnevisionImageProcessorPil` and
`Qwen2VLImageProcessorPil`. The video processors and the torchvision-backed image processors
cannot be imported or run on this machine.

Tolerance: TOL = 1e-6 max abs difference in float32. The measured difference is 0 (bit-exact); 1e-6
only leaves room for float32 last-bit noise, and is far below one uint8 level after normalisation
(>= 2/255 for LLaVA, >= 1/(255*0.277) for Qwen), so a different resampler would fail.
"""
import math

import numpy as np
import pytest
import torch
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models.preprocess import llava_onevision_pixels, qwen2_5_vl_pixels

TOL = 1e-6
# Qwen2VLVideoProcessor class defaults (size = {"shortest_edge": ..., "longest_edge": ...}).
QWEN_VIDEO_MIN_PIXELS = 128 * 28 * 28
QWEN_VIDEO_MAX_PIXELS = 768 * 28 * 28


def processor_pixels(frames, min_pixels=QWEN_VIDEO_MIN_PIXELS, max_pixels=QWEN_VIDEO_MAX_PIXELS):
    """qwen2_5_vl_pixels at the size the processor picks for these frames (transformers' own smart_resize)."""
    return qwen2_5_vl_pixels(frames, smart_resize(frames.shape[1], frames.shape[2], 28, min_pixels, max_pixels))


def random_frames(t: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, height, width, 3), dtype=np.uint8)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# ---- LLaVA-OneVision -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llava_reference():
    # llava-hf checkpoints configure mean = std = 0.5; the class defaults are the CLIP values.
    processor = LlavaOnevisionImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3)

    def reference(frames: np.ndarray) -> torch.Tensor:
        # A single image goes through anyres; its first patch is the whole frame resized to 384x384,
        # rescaled and normalised: the same steps the video processor applies to each frame.
        return torch.stack([torch.from_numpy(processor(images=f)["pixel_values"][0][0]) for f in frames])

    return reference


@pytest.mark.parametrize("height,width", [(50, 70), (240, 320), (333, 500), (384, 384)])
def test_llava_onevision_matches_transformers(llava_reference, height, width):
    frames = random_frames(3, height, width)
    ours = llava_onevision_pixels(frames)
    assert ours.shape == (3, 3, 384, 384) and ours.dtype == torch.float32
    assert max_diff(ours, llava_reference(frames)) <= TOL


# ---- Qwen2.5-VL ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen_image_processor():
    return Qwen2VLImageProcessorPil(min_pixels=QWEN_VIDEO_MIN_PIXELS, max_pixels=QWEN_VIDEO_MAX_PIXELS)


def qwen_video_reference(processor, frames: np.ndarray, temporal_patch_size: int = 2):
    """The video processor's output rebuilt from the image processor, frame by frame.

    The image processor copies one frame into every temporal slot of a patch; the video processor
    puts frames 2k, 2k+1 into the slots of temporal patch k (columns ordered channel, time, row,
    col) and repeats the last frame when t is odd."""
    frames = list(frames) + [frames[-1]] * (-len(frames) % temporal_patch_size)
    per_frame, grid = [], None
    for f in frames:
        out = processor(images=f, return_tensors="pt")
        rows, cols = out["pixel_values"].shape
        channels = out["pixel_values"].reshape(rows, 3, temporal_patch_size, -1)[:, :, 0]  # (rows, C, p*p)
        per_frame.append(channels)
        grid = out["image_grid_thw"]
    starts = range(0, len(frames), temporal_patch_size)
    groups = [torch.stack(per_frame[i:i + temporal_patch_size], dim=2) for i in starts]  # (rows, C, T, p*p)
    pixels = torch.cat([g.reshape(g.shape[0], -1) for g in groups])
    grid_thw = torch.tensor([[len(groups), int(grid[0, 1]), int(grid[0, 2])]])
    return pixels, grid_thw


@pytest.mark.parametrize("t,height,width", [(3, 50, 70), (4, 240, 320)])
def test_qwen2_5_vl_matches_transformers(qwen_image_processor, t, height, width):
    frames = random_frames(t, height, width, seed=t)
    pixels, grid_thw = processor_pixels(frames)
    ref_pixels, ref_grid = qwen_video_reference(qwen_image_processor, frames)
    assert grid_thw.dtype == torch.long and grid_thw.shape == (1, 3)
    assert torch.equal(grid_thw, ref_grid)
    assert grid_thw[0, 0] == math.ceil(t / 2)  # odd t: the last frame is repeated
    assert pixels.shape == (int(grid_thw.prod()), 3 * 2 * 14 * 14)
    assert max_diff(pixels, ref_pixels) <= TOL


@pytest.mark.parametrize("height,width", [(50, 70), (720, 1280)])  # min_pixels and max_pixels branches
def test_qwen2_5_vl_single_frame_equals_image_processor(qwen_image_processor, height, width):
    # One frame, repeated to fill the temporal patch, is exactly what the image processor returns.
    frame = random_frames(1, height, width, seed=7)
    pixels, grid_thw = processor_pixels(frame)
    ref = qwen_image_processor(images=frame[0], return_tensors="pt")
    assert torch.equal(grid_thw, ref["image_grid_thw"])
    assert max_diff(pixels, ref["pixel_values"]) <= TOL


def test_qwen2_5_vl_custom_pixel_bounds():
    processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056)  # the 7B checkpoint's config
    frame = random_frames(1, 240, 320, seed=3)
    pixels, grid_thw = processor_pixels(frame, min_pixels=3136, max_pixels=12845056)
    ref = processor(images=frame[0], return_tensors="pt")
    assert torch.equal(grid_thw, ref["image_grid_thw"])
    assert max_diff(pixels, ref["pixel_values"]) <= TOL


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("frames,words", [
    (np.zeros((2, 50, 70, 3), np.float32), ["float32", "(2, 50, 70, 3)"]),
    (np.zeros((2, 3, 50, 70), np.uint8), ["uint8", "(2, 3, 50, 70)"]),  # channels first
    (np.zeros((50, 70, 3), np.uint8), ["(50, 70, 3)"]),  # one frame without the t axis
    (np.zeros((0, 50, 70, 3), np.uint8), ["(0, 50, 70, 3)"]),
    (torch.zeros(2, 50, 70, 3, dtype=torch.uint8), ["Tensor"]),
])
@pytest.mark.parametrize("fn", [llava_onevision_pixels, lambda frames: qwen2_5_vl_pixels(frames, (56, 56))])
def test_bad_frames_give_one_clear_line(fn, frames, words):
    with pytest.raises(KitInputError) as err:
        fn(frames)
    message = str(err.value)
    assert message.startswith("frames:") and "\n" not in message
    assert all(w in message for w in words), message
