"""uint8 video frames -> the pixel tensors a real video LLM expects, without torchvision.

The transformers video processors (`LlavaOnevisionVideoProcessor`, `Qwen2VLVideoProcessor`) need
torchvision, which this kit cannot depend on. This module reproduces the *PIL backend* of the
matching transformers image processors (`LlavaOnevisionImageProcessorPil`,
`Qwen2VLImageProcessorPil`, transformers 5.x) bit for bit, and lays the frames out the way the
video processors do:

- resize: PIL `Image.resize(..., BICUBIC)` on the uint8 frame, exactly the call transformers'
  `image_transforms.resize` makes (both models' processors use `PILImageResampling.BICUBIC`); the
  result is uint8, as in transformers. LLaVA-OneVision frames go to its vision tower's square size;
  Qwen2.5-VL frames go to the size the adapter fixes (`frame_size`: the processor would pick one per
  video with its `smart_resize`, and so a grid per video; the kit needs one grid for all videos);
- rescale then normalise: `float32(float64(v) * (1/255))`, then `(x - mean) / std` in float32, as
  `image_transforms.rescale` / `normalize` do. Since the resized frame is uint8, this is a lookup
  table of 256 values per channel, computed with those very operations (so it is exact, and cheap).

Known gap to the torchvision-backed video processors (which could not be run here): they resize
with torch's antialiased bicubic instead of PIL's (PIL works in fixed point and rounds to uint8
between its two passes), and they fuse rescale+normalise into `(x - 255*mean) / (255*std)`
(float32 last-bit differences). Emulating their resize with `F.interpolate(..., antialias=True)`
gave pixels up to ~4 uint8 levels off PIL on a smooth image with a sharp box, ~23 on random noise.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cacovid_lib.io_utils import KitInputError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # transformers.image_utils.OPENAI_CLIP_MEAN
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # transformers.image_utils.OPENAI_CLIP_STD
# llava-hf LLaVA-OneVision checkpoints set mean = std = 0.5 (SigLIP) in their processor configs;
# the transformers class defaults (CLIP values) are overridden by those files.
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
RESCALE_FACTOR = 1 / 255


def check_frames(frames) -> np.ndarray:
    """Return `frames` if it is a uint8 array (t, H, W, 3) with t, H, W >= 1; else a one-line KitInputError."""
    if not isinstance(frames, np.ndarray):
        raise KitInputError(f"frames: expected a numpy uint8 array (t, H, W, 3), got {type(frames).__name__}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise KitInputError(
            f"frames: expected a uint8 array (t, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (t, H, W, 3) -> uint8 (t, height, width, 3) with PIL bicubic, the call transformers' PIL backend makes."""
    out = [Image.fromarray(f).resize((width, height), resample=Image.Resampling.BICUBIC) for f in frames]
    return np.stack([np.asarray(img) for img in out])


def _normalize_table(mean, std) -> np.ndarray:
    """(3, 256) float32: value of each uint8 level per channel after transformers' rescale + normalize."""
    levels = (np.arange(256, dtype=np.float64) * RESCALE_FACTOR).astype(np.float32)  # rescale: float64 product
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    return (levels[None, :] - mean32) / std32  # normalize: float32 arithmetic


def normalize_frames(frames: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 (t, H, W, 3) -> float32 (t, 3, H, W): rescale by 1/255, then (x - mean) / std."""
    table = _normalize_table(mean, std)
    channels = [table[c][frames[..., c]] for c in range(3)]  # each (t, H, W)
    return torch.from_numpy(np.stack(channels, axis=1))


def llava_onevision_pixels(frames: np.ndarray, size: int = 384) -> torch.Tensor:
    """uint8 frames (t, H, W, 3) -> LLaVA-OneVision `pixel_values_videos[0]` (t, 3, size, size) float32.

    Each frame is resized to size x size (no aspect-ratio keeping, no crop), rescaled and normalised
    with mean = std = 0.5, as llava-hf's video processor config does."""
    return normalize_frames(resize_frames(check_frames(frames), size, size), SIGLIP_MEAN, SIGLIP_STD)


def _qwen_patchify(x: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int):
    """(t, C, H, W) -> (grid_t*grid_h*grid_w, C*temporal_patch_size*patch_size**2), (grid_t, grid_h, grid_w).

    Same layout as `Qwen2VLVideoProcessor.patchify`: rows ordered (t, h-block, w-block, h-in-merge,
    w-in-merge) so that merge_size**2 neighbours are consecutive for the patch merger; columns
    ordered (channel, time, row, col)."""
    t, c, h, w = x.shape
    if pad := -t % temporal_patch_size:
        # The processor repeats the last frame to fill the last temporal patch.
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
        t += pad
    grid_t, grid_h, grid_w = t // temporal_patch_size, h // patch_size, w // patch_size
    x = x.reshape(grid_t, temporal_patch_size, c,
                  grid_h // merge_size, merge_size, patch_size,
                  grid_w // merge_size, merge_size, patch_size)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, gh/m, gw/m, m, m, C, T, p, p)
    patches = x.reshape(grid_t * grid_h * grid_w, c * temporal_patch_size * patch_size * patch_size)
    return patches, (grid_t, grid_h, grid_w)


def qwen2_5_vl_pixels(frames: np.ndarray, size: tuple[int, int], patch_size: int = 14, temporal_patch_size: int = 2,
                      merge_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames (t, H, W, 3) -> Qwen2.5-VL (`pixel_values_videos` (N, C*T*p*p) float32, `video_grid_thw` (1, 3) long).

    Frames are resized to `size` (height, width; multiples of patch_size*merge_size), rescaled, normalised with
    the CLIP mean/std, and cut into patches; an odd t gets its last frame repeated. The processor's own pixels
    for frames it resizes to `size` (its `smart_resize` of their height and width)."""
    x = normalize_frames(resize_frames(check_frames(frames), *size), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)  # (t, 3, H, W)
    patches, grid = _qwen_patchify(x, patch_size, temporal_patch_size, merge_size)
    return patches, torch.tensor([grid], dtype=torch.long)
