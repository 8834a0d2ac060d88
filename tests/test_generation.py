"""Greedy decoding with a KV cache (cacovid_lib/models/generation.py) on tiny random LLaVA-OneVision and Qwen2.5-VL
models of the real classes: the same token ids, answers and per-step logits as the kit's uncached decoding
(VideoLLM.generate, the uncached FastV decoder (conftest)) on left-padded batches of different prompt lengths
and keep-masks, the prompt through the language model once, and bad arguments as one line."""
import copy

import pytest
import torch

from conftest import uncached_generate_pruned_inside

from cacovid_lib.compare.profile import TINY_SHAPE, build_llava_onevision, build_qwen2_5_vl
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models import generation
from cacovid_lib.models.generation import (generate_cached, generate_cached_ids, generate_pruned_inside_cached,
                                           generate_pruned_inside_cached_ids)

STEPS = 6
# prompts of different lengths, so the batch is left-padded
ITEMS = [{"problem": "what colour is the circle ?", "options": ["A. red", "B. blue"]},
         {"problem": "what colour is the circle ? answer : a , b , c or d .", "options": ["A. green", "B. yellow"]}]


@pytest.fixture(scope="module")
def llava():
    torch.manual_seed(0)
    return build_llava_onevision(TINY_SHAPE, grid_side=2, num_frames=3, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def qwen():
    torch.manual_seed(0)
    return build_qwen2_5_vl(TINY_SHAPE, grid_side=2, num_frames=3, device="cpu", dtype=torch.float32)


def inputs(vlm, seed=1):
    """Random video tokens (2, N+1, D) and two different keep-masks with the same count (2, N): positions skip."""
    n, dim = vlm.num_video_tokens, vlm.model.get_input_embeddings().weight.shape[1]
    g = torch.Generator().manual_seed(seed)
    video = 3 * torch.randn(2, n + 1, dim, generator=g)
    keeps = torch.zeros(2, n, dtype=torch.bool)
    keeps[0, torch.randperm(n, generator=g)[:n // 2]] = True
    keeps[1, torch.arange(0, n, 2)] = True
    assert not torch.equal(keeps[0], keeps[1])
    return video, keeps


class RecordingTokenizer:
    """The model's tokenizer, recording the ids each answer decodes from."""

    def __init__(self, tokenizer):
        self._tokenizer, self.decoded = tokenizer, []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def decode(self, ids, **kwargs):
        self.decoded.append(list(ids))
        return self._tokenizer.decode(ids, **kwargs)


def uncached(vlm, run, stop):
    """run(copy of vlm) with stop ids `stop`, recording -> (texts, each row's ids, the next-token logits (B, V) of
    every step)."""
    ref = copy.copy(vlm)
    ref.tokenizer, ref.stop_ids, logits = RecordingTokenizer(vlm.tokenizer), lambda: set(stop), []

    def last_logits(seqs):
        logits.append(type(vlm).last_logits(ref, seqs))
        return logits[-1]

    def forward_pruned_inside(seqs, starts, keeps, after_layer):
        out, lengths = type(vlm).forward_pruned_inside(ref, seqs, starts, keeps, after_layer)
        logits.append(out[torch.arange(len(seqs)), lengths - 1])
        return out, lengths

    ref.last_logits, ref.forward_pruned_inside = last_logits, forward_pruned_inside
    texts = run(ref)
    return texts, ref.tokenizer.decoded, logits


def cached(monkeypatch, run):
    """run() with generation's greedy loop recording the logits it decodes from -> (run's result, logits list)."""
    logits, real = [], generation.greedy_ids

    def greedy_ids(first, step, stop, max_new_tokens):
        logits.append(first)

        def recorded(tokens):
            logits.append(step(tokens))
            return logits[-1]
        return real(first, recorded, stop, max_new_tokens)

    with monkeypatch.context() as patch:
        patch.setattr(generation, "greedy_ids", greedy_ids)
        return run(), logits


def layer_lengths(layer, run):
    """run() -> (its result, the sequence length of every call `layer` sees)."""
    seen = []

    def hook(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).shape[1])
    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        return run(), seen
    finally:
        handle.remove()


# ---- the same answers as the uncached decoding ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_cached_generation_gives_the_uncached_ids_answers_and_logits(backend, request, monkeypatch):
    vlm = request.getfixturevalue(backend)
    video, keeps = inputs(vlm)
    texts, ids, ref_logits = uncached(vlm, lambda m: m.generate(ITEMS, video, keeps, max_new_tokens=STEPS), stop=set())
    assert generate_cached(vlm, ITEMS, video, keeps, STEPS, stop_ids=set()) == texts
    got_ids, logits = cached(monkeypatch, lambda: generate_cached_ids(vlm, ITEMS, video, keeps, STEPS, stop_ids=set()))
    assert got_ids == ids and all(len(x) == STEPS for x in ids)
    assert len(logits) == len(ref_logits) == STEPS
    for a, b in zip(logits, ref_logits):  # the positions are right, not only the argmax
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_a_stop_id_ends_its_row_as_in_the_uncached_decoding(backend, request):
    vlm = request.getfixturevalue(backend)
    video, keeps = inputs(vlm)
    free = generate_cached_ids(vlm, ITEMS, video, keeps, STEPS, stop_ids=set())
    stop = {free[0][2]}  # a token row 0 produces: it ends there, before it
    texts, ids, _ = uncached(vlm, lambda m: m.generate(ITEMS, video, keeps, max_new_tokens=STEPS), stop=stop)
    got = generate_cached_ids(vlm, ITEMS, video, keeps, STEPS, stop_ids=stop)
    assert got == ids and got[0] == free[0][:free[0].index(free[0][2])] and len(got[0]) <= 2
    assert generate_cached(vlm, ITEMS, video, keeps, STEPS, stop_ids=stop) == texts
    patched = copy.copy(vlm)
    patched.stop_ids = lambda: stop  # the default stop ids are the model's
    assert generate_cached(patched, ITEMS, video, keeps, STEPS) == texts


@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_a_rollout_batch_gives_the_uncached_ids(backend, request):
    """The generation reward's batch: G rows of one item, each with its own keep-mask (different counts too)."""
    vlm = request.getfixturevalue(backend)
    video, _ = inputs(vlm)
    n, g = vlm.num_video_tokens, 4
    keeps = torch.rand(g, n, generator=torch.Generator().manual_seed(3)) < torch.linspace(0.2, 0.8, g)[:, None]
    assert len({tuple(k.tolist()) for k in keeps}) == g
    items, videos = [ITEMS[1]] * g, video[:1].expand(g, -1, -1)
    for stop in (set(), vlm.stop_ids()):
        texts, ids, _ = uncached(vlm, lambda m: m.generate(items, videos, keeps, max_new_tokens=STEPS), stop=stop)
        assert generate_cached_ids(vlm, items, videos, keeps, STEPS, stop_ids=stop) == ids
        assert generate_cached(vlm, items, videos, keeps, STEPS, stop_ids=stop) == texts


@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_a_stop_text_ends_its_row_with_the_text_kept(backend, request):
    vlm = request.getfixturevalue(backend)
    video, keeps = inputs(vlm)
    free = generate_cached_ids(vlm, ITEMS, video, keeps, STEPS, stop_ids=set())
    decode = lambda ids: vlm.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    k = next(k for k in range(1, STEPS) if decode(free[0][:k + 1]).strip())  # a text row 0 reaches after a few tokens
    stop_text = decode(free[0][:k + 1]).rstrip()[-3:]

    def expected(ids):  # the shortest prefix whose whole decoded text ends with stop_text
        return next((ids[:j] for j in range(1, len(ids) + 1) if decode(ids[:j]).rstrip().endswith(stop_text)), ids)
    got = generate_cached_ids(vlm, ITEMS, video, keeps, STEPS, stop_ids=set(), stop_text=stop_text)
    assert got == [expected(ids) for ids in free] and len(got[0]) <= k + 1
    assert generate_cached(vlm, ITEMS, video, keeps, STEPS, stop_ids=set(), stop_text=stop_text)[0].endswith(stop_text)
    with pytest.raises(KitInputError, match="stop_text: ' ' is not a non-blank string"):
        generate_cached(vlm, ITEMS, video, keeps, STEPS, stop_text=" ")


@pytest.mark.parametrize("after_layer", [0, 1])
def test_pruned_inside_cached_gives_the_uncached_ids_answers_and_logits(llava, after_layer, monkeypatch):
    video, keeps = inputs(llava)
    texts, ids, ref_logits = uncached(llava, lambda m: uncached_generate_pruned_inside(m, ITEMS, video, keeps, after_layer, STEPS),
                                      stop=set())
    assert generate_pruned_inside_cached(llava, ITEMS, video, keeps, after_layer, STEPS, stop_ids=set()) == texts
    got_ids, logits = cached(monkeypatch, lambda: generate_pruned_inside_cached_ids(llava, ITEMS, video, keeps, after_layer,
                                                                                    STEPS, stop_ids=set()))
    assert got_ids == ids and all(len(x) == STEPS for x in ids)
    assert len(logits) == len(ref_logits) == STEPS
    for a, b in zip(logits, ref_logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the later layers do not see the dropped tokens (after the last layer there are none: the plain decoding with
    # every token); with every token kept, the plain decoding
    every = torch.ones_like(keeps)
    plain_ids, plain = cached(monkeypatch, lambda: generate_cached_ids(llava, ITEMS, video, every, STEPS, stop_ids=set()))
    last = after_layer == len(llava.language_model.layers) - 1
    assert torch.allclose(logits[0], plain[0], rtol=1e-4, atol=1e-4) == last
    assert generate_pruned_inside_cached_ids(llava, ITEMS, video, every, after_layer, STEPS, stop_ids=set()) == plain_ids

    free = ids
    stop = {free[1][1]}
    texts, ids, _ = uncached(llava, lambda m: uncached_generate_pruned_inside(m, ITEMS, video, keeps, after_layer, STEPS), stop=stop)
    got = generate_pruned_inside_cached_ids(llava, ITEMS, video, keeps, after_layer, STEPS, stop_ids=stop)
    assert got == ids and got[1] == free[1][:free[1].index(free[1][1])]


def test_pruned_inside_rows_may_keep_different_numbers_of_tokens(llava):
    """The uncached forward needs one count per batch; the cached one re-pads: each row as if decoded alone."""
    video, keeps = inputs(llava)
    keeps[1, 1] = True  # row 1 keeps one more
    alone = [generate_pruned_inside_cached_ids(llava, [it], v[None], k[None], 0, STEPS, stop_ids=set())[0]
             for it, v, k in zip(ITEMS, video, keeps)]
    assert alone == [uncached(llava, lambda m: uncached_generate_pruned_inside(m, [it], v[None], k[None], 0, STEPS), set())[1][0]
                     for it, v, k in zip(ITEMS, video, keeps)]
    assert generate_pruned_inside_cached_ids(llava, ITEMS, video, keeps, 0, STEPS, stop_ids=set()) == alone


# ---- the prompt runs once -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_the_prompt_goes_through_the_model_once_then_one_token_per_step(backend, request):
    vlm = request.getfixturevalue(backend)
    video, keeps = inputs(vlm)
    width = max(vlm.assemble(vlm.prompt(it), v, k)[0].shape[0] for it, v, k in zip(ITEMS, video, keeps))
    _, seen = layer_lengths(vlm.language_model.layers[0],
                            lambda: generate_cached(vlm, ITEMS, video, keeps, STEPS, stop_ids=set()))
    assert seen == [width] + [1] * (STEPS - 1)
    first = generate_cached_ids(vlm, ITEMS, video, keeps, 1, stop_ids=set())
    _, seen = layer_lengths(vlm.language_model.layers[0],  # every row stops at once: the prefill only
                            lambda: generate_cached(vlm, ITEMS, video, keeps, STEPS, stop_ids={x[0] for x in first}))
    assert seen == [width]


def test_pruned_inside_prompt_runs_once_and_the_later_layers_see_the_kept_tokens(llava):
    video, keeps = inputs(llava)
    n = llava.num_video_tokens
    width = max(len(p.prefix_ids) + n + 1 + len(p.suffix_ids) for p in map(llava.prompt, ITEMS))
    layers = llava.language_model.layers
    (_, early), late = layer_lengths(layers[1], lambda: layer_lengths(
        layers[0], lambda: generate_pruned_inside_cached(llava, ITEMS, video, keeps, 0, STEPS, stop_ids=set())))
    assert early == [width] + [1] * (STEPS - 1)
    assert late == [width - (n - int(keeps[0].sum()))] + [1] * (STEPS - 1)


# ---- arguments ------------------------------------------------------------------------------------------------------
def test_no_new_tokens_are_empty_answers(llava):
    video, keeps = inputs(llava)
    assert generate_cached(llava, ITEMS, video, keeps, 0) == llava.generate(ITEMS, video, keeps, max_new_tokens=0) == ["", ""]
    assert generate_pruned_inside_cached(llava, ITEMS, video, keeps, 0, 0) == ["", ""]


def test_bad_arguments_are_one_line(llava, qwen, monkeypatch):
    video, keeps = inputs(llava)
    cases = [
        (lambda: generate_cached(llava, ITEMS[:1], video, keeps, 2), "do not match"),
        (lambda: generate_cached(llava, ITEMS, video, keeps[:, 1:], 2), "do not match"),
        (lambda: generate_cached(llava, ITEMS, video, keeps.long(), 2), "bool"),
        (lambda: generate_cached(llava, ITEMS, video, keeps, -1), "max_new_tokens"),
        (lambda: generate_pruned_inside_cached(llava, ITEMS, video, keeps, 2, 2), "after_layer: 2"),
        (lambda: generate_pruned_inside_cached(qwen, ITEMS, *inputs(qwen), 0, 2), "LLaVA-OneVision only"),
    ]
    for call, message in cases:
        with pytest.raises(KitInputError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    monkeypatch.setattr(llava.language_model.config, "_attn_implementation", "flash_attention_2")
    with pytest.raises(KitInputError, match="'flash_attention_2' cannot run in-LLM pruning's 4-D attention masks"):
        generate_pruned_inside_cached(llava, ITEMS, video, keeps, 0, 2)
