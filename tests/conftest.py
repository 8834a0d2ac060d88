import os
from pathlib import Path

import pytest

from cacovid_lib.cpu_pins import apply_pins, runtime_threads

ROOT = Path(__file__).resolve().parents[1]
# before torch or numpy loads: the suite runs on the pipeline's code path and thread count (cacovid_lib/cpu_pins.py)
apply_pins(runtime_threads(ROOT / "params.yaml"))

import torch  # noqa: E402
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A few rendered videos per split, shared by the tests that only read them."""
    from cacovid_lib.embedded.world import build_world

    root = tmp_path_factory.mktemp("world")
    build_world(root, seed=1, num_videos={"train": 12, "val": 3, "test": 4}, workers=2)
    return root


@pytest.fixture(scope="session")
def tiny_vlm(tiny_world):
    """An untrained small video LLM of the real class, with the kit's tokenizer."""
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, build_small_vlm
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=64, text_layers=2, vision_hidden=32), seed=0).eval()
    return LlavaOneVisionVideoLLM(model, tokenizer, num_frames=8)


@pytest.fixture(scope="session")
def test_split(tiny_world):
    """The tiny world's test split, videos decoded."""
    from cacovid_lib.embedded.split import load_split

    return load_split(tiny_world, "test", 8)


@pytest.fixture(scope="session")
def embeds(tiny_vlm, test_split):
    """The test split's video-token embeddings by the untrained tiny video LLM: (V, N+1, D)."""
    from cacovid_lib.models.base import encode_videos

    return encode_videos(tiny_vlm, test_split.frames)


# ---- tiny random models of the real classes, saved to disk (tests of the real-model code paths) ----------
QWEN_FRAME = (112, 168)  # 8x12 patches -> 4x6 video tokens per 2 frames: not square, so h and w cannot be swapped


def qwen_tokenizer():
    """The kit's word-level vocabulary plus the special tokens of Qwen2.5-VL's chat template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from cacovid_lib.data.schema import LETTERS
    from cacovid_lib.embedded.tokenizer import PUNCTUATION, TEMPLATE_WORDS
    from cacovid_lib.embedded.world import COLOURS, SHAPES

    specials = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|video_pad|>", "<|image_pad|>"]
    words = specials + TEMPLATE_WORDS + ["colour", "circle"] + list(COLOURS) + list(SHAPES) + [c.lower() for c in LETTERS] + PUNCTUATION
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", unk_token="<unk>", eos_token="<|im_end|>",
                                   extra_special_tokens=specials[2:])  # matched before splitting, as in Qwen's tokenizer


def tiny_qwen(tokenizer):
    """A randomly initialised Qwen2.5-VL: 2-block vision tower (patch 14, merge 2, windowed + full attention), 2-layer LLM."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, out_hidden_size=64, window_size=56, fullatt_block_indexes=[1],
                           tokens_per_second=2),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                         bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen")
    tokenizer = qwen_tokenizer()
    tiny_qwen(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory):
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, build_small_vlm
    from cacovid_lib.embedded.tokenizer import build_tokenizer

    folder = tmp_path_factory.mktemp("llava")
    tokenizer = build_tokenizer()
    build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=64, text_layers=2, vision_hidden=32), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def video_r1(tmp_path_factory):
    """A Video-R1 media root with four tiny MP4s and one image item (skipped: videos only, as the release)."""
    import json

    import numpy as np

    from cacovid_lib.data.video_io import write_video

    root = tmp_path_factory.mktemp("Video-R1-data")
    rng = np.random.default_rng(1)
    items = []
    for n in range(4):
        write_video(root / f"videos/v{n}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
        items.append({"problem_id": n, "problem": "what colour is the circle ?", "data_type": "video",
                      "problem_type": "multiple choice", "options": ["A. red", "B. blue", "C. green", "D. cyan"],
                      "solution": f"<answer>{'ABCD'[n]}</answer>", "path": f"./videos/v{n}.mp4", "data_source": "fixture"})
    items.append(dict(items[0], problem_id=9, data_type="image", path="./images/none.png"))
    (root / "train.json").write_text(json.dumps(items))
    return root / "train.json", root


# ---- a planted policy task without an LLM (tests of the policy loop) --------------------------------------------
PLANTED_GRID = (4, 4, 4)  # t, h, w of the planted videos
PLANTED_DIM = 64
PLANTED_KEYS = 2


def planted_world(num_items, seed):
    """Random video tokens; in PLANTED_KEYS of the 4 frames one 'key' token has a large first coordinate. The mark
    is one coordinate of 64, not an outlier direction, so a random walk of the weights cannot find it."""
    g = torch.Generator().manual_seed(seed)
    t, h, w = PLANTED_GRID
    video = torch.randn(num_items, t * h * w, PLANTED_DIM, generator=g)
    keys = []
    for i in range(num_items):
        frames = torch.randperm(t, generator=g)[:PLANTED_KEYS]
        k = frames * h * w + torch.randint(0, h * w, (PLANTED_KEYS,), generator=g)
        video[i, k, 0] = 4.0
        keys.append(k)
    return video, torch.stack(keys)


def inputs_for(video):
    """The policy loop's inputs_fn for planted videos: prompts of video tokens only."""
    from cacovid_lib.method.policy import PolicyInputs

    def inputs_fn(idx):
        v = video[torch.as_tensor(idx)]  # (B, N, D)
        b, n, _ = v.shape
        return PolicyInputs(v, torch.arange(n).expand(b, n), torch.ones(b, n, dtype=torch.long), torch.ones(b, n, dtype=torch.bool),
                            v, PLANTED_GRID)
    return inputs_fn


def top_k_recovers_keys(policy, video, keys):
    """The share of planted videos whose key tokens are all among the policy's per-frame top 2."""
    import numpy as np

    from cacovid_lib.method.policy import scores

    t, h, w = PLANTED_GRID
    inp = inputs_for(video)(np.arange(len(video)))
    with torch.no_grad():
        tok, _ = policy(inp.embeds, inp.positions, inp.attention_mask, inp.video_mask, PLANTED_GRID)
    top = scores(tok).view(len(video), t, h * w).topk(2, dim=-1).indices + torch.arange(t)[:, None] * h * w  # (B, t, 2)
    top = top.view(len(video), -1)
    return float(np.mean([set(k.tolist()) <= set(tp.tolist()) for k, tp in zip(keys, top)]))


def qwen2_llm():
    """A one-layer random Qwen2 of the planted videos' width: the policy's source layer."""
    from transformers import Qwen2Config, Qwen2Model

    return Qwen2Model(Qwen2Config(hidden_size=PLANTED_DIM, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=16)).eval()


# ---- figures the stages save --------------------------------------------------------------------------------------
def drawn_png(path, dpi: int = 110):
    """A figure file's (width, height) in inches at save_figure's dpi, after checking that it decodes as a PNG whose
    pixels are not one background colour (a blank or cut-off file fails)."""
    import numpy as np
    from matplotlib.image import imread

    pixels = imread(path)  # (H, W, 3 or 4) floats
    rgb = pixels[..., :3].reshape(-1, 3)
    background = np.median(rgb, axis=0)
    drawn = float(np.mean(np.abs(rgb - background).max(axis=1) > 0.1))
    assert drawn > 0.005, f"{path}: {drawn:.2%} of the pixels drawn"
    return pixels.shape[1] / dpi, pixels.shape[0] / dpi


# ---- the uncached FastV decoder: the KV-cached one's reference -------------------------------------------------------
def uncached_generate_pruned_inside(vlm, items: list[dict], video_embeds, keeps, after_layer: int,
                                    max_new_tokens: int) -> list[str]:
    """The reference the KV-cached FastV decoding (models/generation.py) is checked against: greedy decoding with
    FastV's in-LLM pruning (VideoLLM.forward_pruned_inside) rerun over the whole prompt at every step."""
    import torch

    prompts = [vlm.prompt(item) for item in items]
    every = torch.ones(video_embeds.shape[1] - 1, dtype=torch.bool)
    starts = [len(p.prefix_ids) for p in prompts]

    def next_logits(outs):
        seqs = [vlm.assemble(p, v, every, o) for p, v, o in zip(prompts, video_embeds, outs)]
        logits, lengths = vlm.forward_pruned_inside(seqs, starts, keeps, after_layer)  # (B, L', V), (B,)
        return logits[torch.arange(len(seqs), device=logits.device), lengths - 1]  # (B, V)

    return vlm.decode_greedy(next_logits, len(items), vlm.stop_ids(), max_new_tokens)


# ---- planted scenes: videos whose frames repeat, for the merging baselines' tests -------------------------------------
def scenes(frames_per_scene=(4, 4), hw=6, dim=16, noise=0.05, seed=0):
    """A video of planted scenes: every frame of a scene is the scene's tokens plus a little noise. -> (t*hw, dim)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for count in frames_per_scene:
        base = torch.randn(hw, dim, generator=g)
        out += [base + noise * torch.randn(hw, dim, generator=g) for _ in range(count)]
    return torch.cat(out)
