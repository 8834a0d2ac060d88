"""The vision tower's task-agnostic pretraining (embedded/vision_pretraining.py): its pure pieces on known inputs,
the pooling it matches against the video LLM's own, and both objectives learning on a tiny world's frames."""
import numpy as np
import pytest
import torch

from cacovid_lib.embedded.small_vlm import SmallVLMConfig, build_small_vlm, load_vision_tower, save_model_folder
from cacovid_lib.embedded.tokenizer import build_tokenizer
from cacovid_lib.embedded.vision_pretraining import (
    VisionPretrainConfig, build_vision_tower, cell_features, hide_patches, info_nce, masked_patch_loss, patch_pixels,
    pool_cells, pretrain_vision_tower, random_patch_mask, tower_features
)
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models.preprocess import llava_onevision_pixels

CFG = SmallVLMConfig(vision_hidden=32, vision_layers=1, text_hidden=64, text_layers=2)  # 64-pixel frames, 8x8 patches, 4x4 cells


def test_random_patch_mask_hides_the_share_per_frame():
    mask = random_patch_mask(torch.Generator().manual_seed(0), 5, 64, 0.25)
    assert mask.shape == (5, 64) and mask.sum(1).tolist() == [16] * 5
    assert len({tuple(row.tolist()) for row in mask}) == 5  # drawn per frame


def test_hide_patches_zeroes_exactly_the_hidden_patches():
    pixels = torch.rand(2, 3, 16, 16) + 1  # 2x2 patches of 8 pixels, all non-zero
    mask = torch.tensor([[True, False, False, True], [False, False, False, False]])
    out = hide_patches(pixels, mask, 8)
    assert (out[0, :, :8, :8] == 0).all() and (out[0, :, 8:, 8:] == 0).all()
    assert torch.equal(out[0, :, :8, 8:], pixels[0, :, :8, 8:]) and torch.equal(out[1], pixels[1])
    tiles = patch_pixels(out, 8)  # (2, 4, 192) patches in the mask's row-major order
    assert (tiles[mask] == 0).all() and (tiles[~mask] != 0).all()


def test_pool_cells_is_the_video_llms_own_pooling():
    # LlavaOnevision pools the projected patches with bilinear interpolation to half the side: on a 2x grid that is a
    # 2x2 mean, which pool_cells must match for the cells' geometry to be the video tokens'
    model = build_small_vlm(build_tokenizer(), CFG, seed=0)
    features = torch.randn(3, 64, 16)  # (frames, 8x8 patches, C)
    assert torch.allclose(pool_cells(features, 8), model.model.apply_pooling(features), atol=1e-6)


def test_info_nce_is_low_for_matched_views_and_high_for_shuffled():
    a = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    assert info_nce(a, a, 0.1) < 0.1
    assert info_nce(a, a[torch.randperm(50)], 0.1) > 3


def test_masked_patch_loss_counts_hidden_patches_only():
    pixels = torch.randn(2, 4, 12)
    target = (pixels - pixels.mean(-1, keepdim=True)) / (pixels.var(-1, keepdim=True) + 1e-6).sqrt()
    mask = torch.tensor([[True, False, False, False], [False, False, True, False]])
    wrong_visible = target.clone()
    wrong_visible[~mask] += 5  # errors on visible patches do not count
    assert masked_patch_loss(wrong_visible, pixels, mask) == pytest.approx(0.0, abs=1e-6)
    assert masked_patch_loss(target + 1, pixels, mask) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def frames(tiny_world):
    from cacovid_lib.embedded.split import load_split

    train = load_split(tiny_world, "train", 8)
    return torch.cat([llava_onevision_pixels(f, 64) for f in train.frames])  # (12*8, 3, 64, 64)


@pytest.fixture(scope="module")
def contrastive_run(frames):
    """A tower before and after 40 contrastive steps, with the loss history."""
    before = build_vision_tower(CFG)
    tower = build_vision_tower(CFG)
    history = pretrain_vision_tower(tower, frames, VisionPretrainConfig(steps=40, frames_per_step=8, warmup_steps=5, lr=3e-3))
    return before, tower, [h["loss"] for h in history]


def test_contrastive_pretraining_learns_and_spreads_the_cells(frames, contrastive_run):
    before, after, losses = contrastive_run
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    # a random tower maps most cells of a frame into one cone; dense contrast pulls them apart
    unit = lambda tower: torch.nn.functional.normalize(cell_features(tower, frames[:8]), dim=-1)  # noqa: E731
    mean_cos = lambda u: float((u @ u.transpose(1, 2)).mean())  # noqa: E731 -- within each frame, self pairs included
    assert mean_cos(unit(after)) < mean_cos(unit(before)) - 0.2


def test_masked_patch_pretraining_learns(frames):
    cfg = VisionPretrainConfig(objective="masked_patches", steps=25, frames_per_step=8, warmup_steps=5, lr=3e-3)
    losses = [h["loss"] for h in pretrain_vision_tower(build_vision_tower(CFG), frames, cfg)]
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:5])  # (predicting each patch's mean alone gives ~1)


def test_the_saved_tower_loads_into_the_video_llm(tmp_path, frames):
    tower = build_vision_tower(CFG, seed=3)
    save_model_folder(tower, None, tmp_path / "tower", {"pretrain": {}})
    model = build_small_vlm(build_tokenizer(), CFG, seed=0).eval()
    load_vision_tower(model, tmp_path / "tower")
    assert torch.equal(tower_features(model.model.vision_tower, frames[:2]), tower_features(tower.eval(), frames[:2]))
    with pytest.raises(KitInputError, match="no pretrained vision tower"):
        load_vision_tower(model, tmp_path / "missing")
    other = build_small_vlm(build_tokenizer(), SmallVLMConfig(vision_hidden=64, vision_layers=1, text_hidden=64, text_layers=2))
    with pytest.raises(KitInputError, match="hidden_size is 32, vlm.model asks for 64"):
        load_vision_tower(other, tmp_path / "tower")
