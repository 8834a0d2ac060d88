"""VisionZip's scoring computes the vision tower's last-layer attention weights alone: the same numbers as eager
attention's full forward with every layer's attention map (kept here as the reference), from layers 0..L-2 run as
the tower runs them, one frame chunk at a time, and no other attention map anywhere."""
import pytest
import torch
import torch.nn.functional as F

from cacovid_lib.compare import baselines
from cacovid_lib.compare.profile import build_llava_onevision
from cacovid_lib.compare.efficiency import LLMShape
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, build_small_vlm
from cacovid_lib.embedded.tokenizer import build_tokenizer
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

FRAMES = 5  # two videos of 5 frames: chunks of 4 cross from one video into the next and leave a remainder


@pytest.fixture(scope="module")
def vlm():
    """The kit's small LLaVA-OneVision with a 3-layer, 4-head SigLIP whose queries and keys are scaled up: random
    weights attend almost uniformly, and parity is to be tested on attention that ranks tokens."""
    cfg = SmallVLMConfig(vision_hidden=128, vision_layers=3, text_hidden=64, text_layers=2)
    model = build_small_vlm(build_tokenizer(), cfg, seed=0).eval()
    with torch.no_grad():
        for layer in model.model.vision_tower.encoder.layers:
            layer.self_attn.q_proj.weight.mul_(6)
            layer.self_attn.k_proj.weight.mul_(6)
    return LlavaOneVisionVideoLLM(model, build_tokenizer(), num_frames=FRAMES)


@pytest.fixture(scope="module")
def pixels(vlm):
    side = vlm.image_size
    return torch.rand(2, FRAMES, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (B, t, 3, S, S)


def eager_reference(vlm, pixels):
    """The scoring as it was: the whole tower under eager attention with every layer's attention map, then the
    last layer's, averaged over heads and queries and pooled like the tokens -> (B, t*h*w)."""
    b, t = pixels.shape[:2]
    tower = vlm.model.model.vision_tower
    with torch.no_grad(), baselines.eager_attention(vlm.model):
        attn = tower(pixels.flatten(0, 1).to(vlm.device, vlm.model.dtype), output_attentions=True).attentions[-1]
    received = attn.float().mean(dim=(1, 2))  # (B*t, P)
    side = int(received.shape[1] ** 0.5)
    _, h, w = vlm.grid
    return F.interpolate(received.view(-1, 1, side, side), size=(h, w), mode="bilinear").view(b, t * h * w)


@pytest.mark.parametrize("frames_per_chunk", [1, 3, 4, 2 * FRAMES, 100])
def test_the_last_layers_attention_equals_eager_attentions_full_forward(vlm, pixels, frames_per_chunk):
    before = vlm.model.config._attn_implementation
    scores = baselines.vision_attention_received(vlm, pixels, frames_per_chunk=frames_per_chunk)
    reference = eager_reference(vlm, pixels)
    assert scores.shape == (2, vlm.num_video_tokens) and scores.dtype == torch.float32
    assert (reference.amax(1) > 3 * reference.amin(1)).all()  # uneven: the tokens' ranking is tested
    torch.testing.assert_close(scores, reference, rtol=1e-5, atol=1e-7)
    assert vlm.model.config._attn_implementation == before  # nothing switched the model to eager


def test_no_layer_returns_attention_weights_and_the_tower_is_never_asked_for_them(vlm, pixels):
    """Forward hooks on every module: none is called with output_attentions, no attention module returns weights,
    the tower's own forward and its last layer's attention module never run (the last layer's weights are computed
    from its q_proj and k_proj alone), and layers 0..L-2 run, each once per chunk."""
    calls, asked, weights = [], [], []
    tower = vlm.model.model.vision_tower
    layers = tower.encoder.layers

    def hook(module, args, kwargs, output):
        calls.append(module)
        if kwargs.get("output_attentions"):
            asked.append(module)
        if isinstance(module, type(layers[0].self_attn)) and output[1] is not None:
            weights.append(module)

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in vlm.model.modules()]
    try:
        baselines.vision_attention_received(vlm, pixels, frames_per_chunk=4)
    finally:
        for handle in handles:
            handle.remove()
    assert asked == [] and weights == []
    assert tower not in calls and tower.encoder not in calls
    assert layers[-1] not in calls and layers[-1].self_attn not in calls
    chunks = -(-2 * FRAMES // 4)
    assert all(calls.count(layer.self_attn) == chunks for layer in layers[:-1])
    assert calls.count(layers[-1].self_attn.q_proj) == calls.count(layers[-1].self_attn.k_proj) == chunks
    assert layers[-1].self_attn.v_proj not in calls and layers[-1].mlp not in calls  # nothing past the weights


def test_every_tensor_stays_on_the_models_device():
    """On meta (shapes only) the whole computation runs there, result included."""
    meta = build_llava_onevision(LLMShape(layers=1, hidden=32, intermediate=64, heads=2, kv_heads=1, vocab=0),
                                 2, 3, "meta", torch.bfloat16)
    side = meta.image_size
    scores = baselines.vision_attention_received(meta, torch.empty(2, 3, 3, side, side, device="meta"), frames_per_chunk=4)
    assert scores.device.type == "meta" and scores.shape == (2, meta.num_video_tokens) and scores.dtype == torch.float32


def test_a_chunk_of_no_frames_is_refused(vlm, pixels):
    with pytest.raises(KitInputError, match="frames_per_chunk: 0 must be at least 1"):
        baselines.vision_attention_received(vlm, pixels, frames_per_chunk=0)
