import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A few rendered videos per split, shared by the tests that only read them."""
    from cacovid_lib.world import build_world

    root = tmp_path_factory.mktemp("world")
    build_world(root, seed=1, num_videos={"train": 12, "val": 3, "test": 4})
    return root


@pytest.fixture(scope="session")
def tiny_vlm(tiny_world):
    """An untrained small video LLM of the real class, with the kit's tokenizer."""
    from cacovid_lib.adapter import VideoLLM
    from cacovid_lib.small_vlm import SmallVLMConfig, build_small_vlm
    from cacovid_lib.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=64, text_layers=2, vision_hidden=32), seed=0).eval()
    return VideoLLM(model, tokenizer, num_frames=8)
