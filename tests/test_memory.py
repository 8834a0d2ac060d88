"""The tensor accounting behind the selection-memory table: exact on a function whose allocations are known, the
same on meta as on the CPU for FastV's scoring (so the 7B figure needs no memory), equal to FastV's analytic formula,
and far below what eager attention's full forward held."""
import math

import pytest
import torch

from cacovid_lib.compare import baselines, registry
from cacovid_lib.compare.efficiency import LLMShape
from cacovid_lib.compare.memory import (SIGLIP_SO400M, TABLE_COLUMNS, VisionShape, fastv_scoring_bytes, peak_live_bytes,
                                        selection_peak_table, visionzip_bytes)
from cacovid_lib.compare.profile import build_llava_onevision
from cacovid_lib.io_utils import KitInputError

SHAPE = LLMShape(layers=4, hidden=64, intermediate=160, heads=4, kv_heads=2, vocab=0)  # grouped-query, MLP-bound as 7B
SEQ_LEN = 300


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_the_peak_of_known_allocations_is_exact(device):
    def allocations():
        a = torch.zeros(1000, device=device)  # 4000 bytes live
        b = torch.ones(500, device=device)  # 6000
        head = a[:10]  # a view: nothing new
        del a  # the view keeps a's storage: still 6000
        b.mul_(2)  # in place: nothing new
        doubled = b * 2  # 8000
        del b, head  # 2000
        c = torch.empty(3000, dtype=torch.float64, device=device)  # 26000: the peak
        del c  # 2000
        return doubled[:100]  # a view of a storage made here: held at the end

    result, peak = peak_live_bytes(allocations)
    assert peak == 26000 and result.shape == (100,) and result.device.type == device


def test_storages_made_before_the_call_count_nothing():
    weights = torch.ones(100, 100)
    _, peak = peak_live_bytes(lambda: (weights.T, weights.view(10, 1000), weights[5:], weights.add_(1)))
    assert peak == 0


@pytest.fixture(scope="module")
def models():
    """The same tiny LLaVA-OneVision LLM on the CPU (real numbers) and on meta (shapes only), in float32 and bf16."""
    return {(device, dtype): build_llava_onevision(SHAPE, 2, 2, device, dtype).language_model
            for device in ("cpu", "meta") for dtype in (torch.float32, torch.bfloat16)}


def _scoring_peak(lm, device, dtype, layer):
    embeds = torch.randn(1, SEQ_LEN, SHAPE.hidden, dtype=dtype, device=device)  # (1, L, D): inputs, not counted
    positions = torch.arange(SEQ_LEN, device=device)[None]  # (1, L)
    with torch.no_grad():
        return peak_live_bytes(lambda: baselines.last_query_attention(lm, embeds, positions, None, layer))[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
@pytest.mark.parametrize("layer", range(SHAPE.layers))
def test_fastv_scoring_accounts_the_same_on_meta_as_on_the_cpu_and_as_its_formula(models, dtype, layer):
    cpu = _scoring_peak(models["cpu", dtype], "cpu", dtype, layer)
    meta = _scoring_peak(models["meta", dtype], "meta", dtype, layer)
    formula = fastv_scoring_bytes(SHAPE, SEQ_LEN, layer, dtype.itemsize)
    assert meta == cpu  # same shapes, same code path: meta's fused-attention stand-in makes what the CPU kernel makes
    assert cpu <= formula <= 1.25 * cpu  # an upper bound ...
    if layer >= 1:
        assert formula == cpu  # ... exact once a full layer's activations are the peak


def test_eager_attentions_full_forward_held_far_more_than_the_formula(models):
    """What the scoring replaced: every layer's (H, L, L) maps. The formula tells the two apart."""
    lm = models["meta", torch.bfloat16]
    embeds = torch.empty(1, SEQ_LEN, SHAPE.hidden, dtype=torch.bfloat16, device="meta")
    mask = torch.ones(1, SEQ_LEN, dtype=torch.long, device="meta")
    with torch.no_grad(), baselines.eager_attention(lm):
        _, peak = peak_live_bytes(lambda: lm(inputs_embeds=embeds, attention_mask=mask, output_attentions=True).attentions[1])
    maps = SHAPE.layers * SHAPE.heads * SEQ_LEN**2 * 2
    assert peak >= maps > 3 * fastv_scoring_bytes(SHAPE, SEQ_LEN, 1, 2)


def test_the_table_has_a_figure_for_every_method_at_small_size():
    tiny = LLMShape(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=0)
    table = selection_peak_table(frames=4, tokens_per_frame=4, text_tokens=40, retention=0.25, shape=tiny, device="meta")
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table["method"]) == [m.key for m in registry.METHODS]
    assert table["peak_mb"].notna().all() and (table["peak_mb"] >= 0).all()
    how = table.set_index("method")["how"]
    assert set(how) <= {"tensor accounting on meta", "tensor accounting on cpu", "formula"}
    assert how["fastv"] == how["temporal_merge"] == "tensor accounting on meta"
    assert how["divprune"] == "tensor accounting on cpu"  # it reads values on the host
    assert how["visionzip"] == "formula"  # no pixels, and the real vision tower's attention is what it costs
    notes = table.set_index("method")["note"]
    assert (notes[how != "tensor accounting on meta"] != "").all()  # every fallback says why
    with pytest.raises(KitInputError, match="tokens_per_frame 5"):
        selection_peak_table(frames=4, tokens_per_frame=5, device="meta")


def _vision_stub(vision, device, dtype):
    """A SigLIP tower of `vision`'s shape seen as the adapter sees it (model.model.vision_tower, device, dtype, grid)."""
    import types

    from transformers import SiglipVisionConfig, SiglipVisionModel

    side = math.isqrt(vision.patches)
    config = SiglipVisionConfig(hidden_size=vision.hidden, intermediate_size=vision.intermediate, num_hidden_layers=vision.layers,
                                num_attention_heads=vision.heads, image_size=14 * side, patch_size=14, vision_use_head=False)
    with torch.device(device):
        tower = SiglipVisionModel._from_config(config, dtype=dtype).eval()
    model = types.SimpleNamespace(model=types.SimpleNamespace(vision_tower=tower), dtype=dtype)
    return types.SimpleNamespace(model=model, device=torch.device(device), grid=(0, -(-side // 2), -(-side // 2)))


@pytest.mark.parametrize("vision, frames, devices, dtype", [
    (VisionShape(layers=3, hidden=64, intermediate=160, heads=4, patches=64), 6, ("cpu", "meta"), torch.float32),
    (VisionShape(layers=3, hidden=64, intermediate=160, heads=4, patches=64), 6, ("cpu", "meta"), torch.bfloat16),
    (SIGLIP_SO400M, 32, ("meta",), torch.bfloat16),  # LLaVA-OneVision-7B's, as it runs: shapes only
], ids=["small-float32", "small-bf16", "7b-bf16"])
def test_visionzip_scoring_stays_within_its_formula(vision, frames, devices, dtype):
    formula = visionzip_bytes(vision, frames, dtype.itemsize)
    for device in devices:
        vlm = _vision_stub(vision, device, dtype)
        side = 14 * math.isqrt(vision.patches)
        pixels = torch.zeros(1, frames, 3, side, side, dtype=dtype, device=device)
        with torch.no_grad():
            _, peak = peak_live_bytes(lambda: baselines.vision_attention_received(vlm, pixels))
        assert peak <= formula <= 1.4 * peak  # an upper bound: exact but for the float32 copies bf16 spares
    if vision is SIGLIP_SO400M:  # what the scoring replaced at 7B's shape: eager's every-layer maps, about 13 GiB
        assert vision.layers * frames * vision.heads * vision.patches**2 * dtype.itemsize > 50 * formula
