"""Real model backends behind the adapter interface, on tiny random models of the real classes saved to disk and
reloaded through `load_video_llm`: the compressed forward with every token equals the plain transformers forward;
Qwen2.5-VL's kept tokens carry their full-sequence rotary ids; the policy, selection, rewards and generation run
unchanged on both backends; load errors are one clear line."""
import copy
import re

import numpy as np
import pytest
import torch
from conftest import QWEN_FRAME
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from cacovid_lib.compare.cacovid import policy_keep_rule
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, scores
from cacovid_lib.method.selection import select_tokens
from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.loader import load_video_llm
from cacovid_lib.models.preprocess import qwen2_5_vl_pixels
from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM
from cacovid_lib.models.rewards import generation_rewards, multiple_choice_rewards

NUM_FRAMES = 4
ITEMS = [
    {"problem": "what colour is the circle ?", "options": ["A. red circle", "B. blue square", "C. green cross", "D. red ring"],
     "problem_type": "multiple choice", "solution": "<answer>A</answer>"},
    {"problem": "which shape appears in the video ?", "options": ["A. ring", "B. square", "C. cross", "D. triangle"],
     "problem_type": "free-form", "solution": "<answer>square</answer>"},
]


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return load_video_llm(qwen_dir, NUM_FRAMES, frame_size=QWEN_FRAME)


@pytest.fixture(scope="module")
def llava(llava_dir):
    return load_video_llm(llava_dir, NUM_FRAMES)


def frames(seed: int, size=QWEN_FRAME) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (NUM_FRAMES, *size, 3), dtype=np.uint8)


def encode(vlm, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.stack([vlm.preprocess(frames(s)) for s in seeds])
    return pixels, vlm.encode_video(pixels)  # (B, ...), (B, N+1, D)


def qwen_input_ids(vlm, prompt, continuation=()):
    """The uncompressed sequence as the Qwen processor writes it: video pads between vision start and end."""
    n = vlm.num_video_tokens
    ids = torch.tensor([prompt.prefix_ids + [vlm.video_token_id] * n + [vlm.vision_end_id] + prompt.suffix_ids + list(continuation)])
    types = (ids == vlm.video_token_id).int() * 2  # (1, L) the processor's mm_token_type_ids: video = 2
    return ids, types


def test_loader_picks_the_backend_and_grid(qwen, llava):
    assert isinstance(qwen, Qwen25VLVideoLLM) and isinstance(llava, VideoLLM)
    assert qwen.grid == (2, 4, 6) and qwen.num_video_tokens == 48
    prompt = qwen.prompt(ITEMS[0])
    start, end = qwen.tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>"])
    assert prompt.prefix_ids[-1] == start and end not in prompt.suffix_ids  # <|vision_end|> travels as video token N
    # frames already at frame_size, which the processor keeps: its own pixels (processor-exact preprocessing)
    assert smart_resize(*QWEN_FRAME, factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 1280) == QWEN_FRAME
    pixels, grid = qwen2_5_vl_pixels(frames(0), QWEN_FRAME)
    assert torch.equal(qwen.preprocess(frames(0)), pixels) and torch.equal(grid, qwen.video_grid_thw)


@torch.no_grad()
def test_qwen_all_tokens_equal_plain_transformers_forward(qwen):
    pixels, video = encode(qwen, [0])
    prompt = qwen.prompt(ITEMS[0])
    n = qwen.num_video_tokens
    assert video.shape == (1, n + 1, 64)
    ours = qwen.forward_sequences([qwen.assemble(prompt, video[0], torch.ones(n, dtype=torch.bool))])
    ids, types = qwen_input_ids(qwen, prompt)
    plain = qwen.model(input_ids=ids, pixel_values_videos=pixels[0], video_grid_thw=qwen.video_grid_thw, mm_token_type_ids=types).logits
    torch.testing.assert_close(ours[:, -1], plain[:, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours, plain, rtol=1e-4, atol=1e-4)
    text_only = qwen.model(input_ids=ids, pixel_values_videos=pixels[0], video_grid_thw=qwen.video_grid_thw).logits
    assert not torch.allclose(text_only[:, -1], plain[:, -1], atol=1e-4)  # 1-D positions differ: the check has teeth


@torch.no_grad()
def test_llava_all_tokens_equal_plain_transformers_forward(llava):
    pixels, video = encode(llava, [0])
    prompt = llava.prompt(ITEMS[0])
    n = llava.num_video_tokens
    ours = llava.forward_sequences([llava.assemble(prompt, video[0], torch.ones(n, dtype=torch.bool))])
    ids = torch.tensor([prompt.prefix_ids + [llava.model.config.video_token_id] * (n + 1) + prompt.suffix_ids])
    plain = llava.model(input_ids=ids, pixel_values_videos=pixels).logits
    torch.testing.assert_close(ours[:, -1], plain[:, -1], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_qwen_kept_tokens_carry_their_full_sequence_rotary_ids(qwen):
    _, video = encode(qwen, [1])
    prompt, n = qwen.prompt(ITEMS[0]), qwen.num_video_tokens
    keep = torch.zeros(n, dtype=torch.bool)
    keep[[0, 5, 6, 23, 24, 47]] = True  # both temporal steps, row and frame boundaries
    continuation = prompt.option_ids[2]
    embeds, positions = qwen.assemble(prompt, video[0], keep, continuation)
    ids, types = qwen_input_ids(qwen, prompt, continuation)
    full, _ = qwen.model.model.get_rope_index(ids, mm_token_type_ids=types, video_grid_thw=qwen.video_grid_thw)  # (3, 1, L)
    p = len(prompt.prefix_ids)
    columns = torch.cat([torch.arange(p), p + torch.nonzero(keep)[:, 0], torch.arange(p + n, ids.shape[1])])
    assert positions.shape == (3, embeds.shape[0]) and torch.equal(positions, full[:, 0, columns])
    t, h, w = qwen.grid
    assert positions[:, p:p + 6].T.tolist() == [[p + 2 * (j // (h * w)), p + j % (h * w) // w, p + j % w]  # (t·2 s, row, col)
                                                for j in (0, 5, 6, 23, 24, 47)]
    scrambled = video[0].clone()
    scrambled[:n][~keep] = torch.randn(n - 6, video.shape[-1])
    torch.testing.assert_close(qwen.forward_sequences([qwen.assemble(prompt, scrambled, keep)]),
                               qwen.forward_sequences([qwen.assemble(prompt, video[0], keep)]))  # dropped: no trace


@pytest.mark.parametrize("backend", ["qwen", "llava"])
@torch.no_grad()
def test_policy_selection_compressed_scoring_and_generation_end_to_end(backend, request):
    vlm = request.getfixturevalue(backend)
    _, video = encode(vlm, [2, 3])  # (2, N+1, D)
    n, grid = vlm.num_video_tokens, vlm.grid
    policy = CompressionPolicy.from_llm(vlm.language_model, seed=0)
    prompts = [vlm.prompt(it) for it in ITEMS]
    inputs = vlm.policy_inputs(prompts, video)
    token_logits, frame_logits = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, grid)
    assert token_logits.shape == (2, n, 2) and frame_logits.shape == (2, grid[0], 2)
    alone = vlm.policy_inputs(prompts[1:], video[1:])  # the shorter prompt without batch padding: same scores
    torch.testing.assert_close(policy(alone.embeds, alone.positions, alone.attention_mask, alone.video_mask, grid)[0][0],
                               token_logits[1], rtol=1e-4, atol=1e-4)
    keep = select_tokens(scores(frame_logits[0]), scores(token_logits[0]), grid, retention=0.25)
    assert int(keep.sum()) == int(0.25 * n)
    keeps = torch.stack([keep, policy_keep_rule(vlm, policy, ITEMS, 0.25)(np.array([1]), video[1:]).keeps[0]])  # (2, N)
    compressed = vlm.option_logprobs(prompts, video, keeps)  # (2, 4)
    assert compressed.shape == (2, 4) and torch.isfinite(compressed).all()
    one_by_one = torch.cat([vlm.option_logprobs([p], v[None], k[None]) for p, v, k in zip(prompts, video, keeps)])
    torch.testing.assert_close(compressed, one_by_one, rtol=1e-4, atol=1e-4)
    rewards = multiple_choice_rewards(vlm, ITEMS, np.array([0, 1]), video, keeps[:, None].expand(-1, 2, -1))  # (B, G)
    assert rewards.shape == (2, 2) and set(rewards.flatten().tolist()) <= {0.0, 1.0}
    texts = vlm.generate(ITEMS, video, keeps, max_new_tokens=3)
    assert len(texts) == 2 and texts == [vlm.generate([it], v[None], k[None], max_new_tokens=3)[0]
                                         for it, v, k in zip(ITEMS, video, keeps)]
    assert generation_rewards(vlm, ITEMS, video, keeps[:, None], max_new_tokens=2).shape == (2, 1)


@pytest.mark.parametrize("backend", ["qwen", "llava"])
@torch.no_grad()
def test_left_padded_prompts_end_in_the_last_column_with_the_right_padded_logits(backend, request):
    """left_padded (one forward per prompt whose options then continue from the cache; FastV's ranking) lines every
    prompt up on the last column; the logits there are the ones the right-padded forward gives at each prompt's end."""
    vlm = request.getfixturevalue(backend)
    _, video = encode(vlm, [5, 6])
    keeps = torch.rand(2, vlm.num_video_tokens, generator=torch.Generator().manual_seed(2)) < 0.5
    seqs = [vlm.assemble(vlm.prompt(it), v, k) for it, v, k in zip(ITEMS, video, keeps)]
    embeds, positions, mask, pads = vlm.left_padded(seqs)
    assert sorted(pads)[0] == 0 < sorted(pads)[1] and mask.sum(1).tolist() == [e.shape[0] for e, _ in seqs]
    hidden = vlm.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
    torch.testing.assert_close(vlm.model.lm_head(hidden[:, -1]), vlm.last_logits(seqs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["qwen", "llava"])
def test_prompt_template_without_the_video_mark_is_one_clear_line(backend, request):
    vlm = copy.copy(request.getfixturevalue(backend))
    vlm.prompt_template = vlm.prompt_template.replace(vlm.video_mark, "")
    with pytest.raises(KitInputError, match=f"^prompt_template: must hold {re.escape(vlm.video_mark)} exactly once$"):
        vlm.prompt(ITEMS[0])


def test_in_llm_pruning_is_llava_only(qwen):
    _, video = encode(qwen, [7])
    keeps = torch.ones(1, qwen.num_video_tokens, dtype=torch.bool)
    with pytest.raises(NotImplementedError, match="Qwen25VLVideoLLM: in-LLM pruning"):
        qwen.option_logprobs_pruned_inside([qwen.prompt(ITEMS[0])], video, keeps, after_layer=0)


@torch.no_grad()
def test_qwen_bfloat16_forward(qwen_dir, qwen):
    try:
        vlm = load_video_llm(qwen_dir, NUM_FRAMES, dtype="bfloat16", frame_size=QWEN_FRAME)
        _, video = encode(vlm, [4])
        keep = torch.rand(vlm.num_video_tokens, generator=torch.Generator().manual_seed(0)) < 0.3
        low = vlm.option_logprobs([vlm.prompt(ITEMS[0])], video, keep[None])
    except RuntimeError as err:  # an op without a CPU bfloat16 kernel
        pytest.skip(f"bfloat16 unsupported on this CPU: {err}")
    assert vlm.model.dtype == torch.bfloat16 and video.dtype == torch.bfloat16
    full = qwen.option_logprobs([qwen.prompt(ITEMS[0])], encode(qwen, [4])[1], keep[None])
    assert torch.isfinite(low).all() and (low - full).abs().max() < 0.5  # bf16 rounding, not a different model


def test_load_errors(tmp_path, monkeypatch, llava_dir):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(KitInputError, match="model type 'bert' is not supported; supported: llava_onevision, qwen2_5_vl"):
        load_video_llm(tmp_path / "bert", NUM_FRAMES)
    with pytest.raises(KitInputError, match="not a model folder"):
        load_video_llm(tmp_path, NUM_FRAMES)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "cacovid-test-nobody/no-such-model-7f3a9c"
    with pytest.raises(KitInputError) as err:
        load_video_llm(hub_id, NUM_FRAMES)
    assert str(err.value) == (f"{hub_id}: not a local folder and not in the Hugging Face cache; download it on a machine "
                              f"with network (huggingface-cli download {hub_id}) and pass the local path")
    with pytest.raises(KitInputError, match="dtype: 'float64' is not supported; use one of float32, bfloat16, float16"):
        load_video_llm(llava_dir, NUM_FRAMES, dtype="float64")
    with pytest.raises(KitInputError, match="use one of sdpa, eager, flash_attention_2"):
        load_video_llm(llava_dir, NUM_FRAMES, attn_implementation="flash")
    from transformers.utils import is_flash_attn_2_available

    if not is_flash_attn_2_available():
        with pytest.raises(KitInputError, match="flash_attention_2 needs the flash-attn package"):
            load_video_llm(llava_dir, NUM_FRAMES, attn_implementation="flash_attention_2")
    with pytest.raises(KitInputError, match="frame_size: applies to qwen2_5_vl only"):
        load_video_llm(llava_dir, NUM_FRAMES, frame_size=(392, 392))
