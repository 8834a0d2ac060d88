"""The adapter: compressed forward == plain transformers forward with all tokens; dropped tokens leave no trace;
kept tokens keep their position ids; prompts hold no unknown word; the model folder round-trips through
save/from_pretrained; the small video LLM's training pieces (captions, curriculum, phases, offset penalty)."""
import numpy as np
import pytest
import torch

from cacovid_lib.compare.evaluation import option_scores
from cacovid_lib.compare.keep import Selection
from cacovid_lib.embedded.small_vlm import save_model_folder
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM


def _video(vlm, split, i=0):
    pixels = vlm.preprocess(split.frames[split.video_of_item[i]])[None]  # (1, t, 3, S, S)
    return pixels, vlm.encode_video(pixels)[0]  # (N+1, D)


@torch.no_grad()
def test_all_ones_mask_matches_plain_transformers_forward(tiny_vlm, test_split):
    item = test_split.items[0]
    pixels, video = _video(tiny_vlm, test_split)
    prompt = tiny_vlm.prompt(item)
    n = tiny_vlm.num_video_tokens
    assert video.shape[0] == n + 1 == 8 * 6 * 6 + 1
    ours = tiny_vlm.forward_sequences([tiny_vlm.assemble(prompt, video, torch.ones(n, dtype=torch.bool))])
    video_id = tiny_vlm.model.config.video_token_id
    input_ids = torch.tensor([prompt.prefix_ids + [video_id] * (n + 1) + prompt.suffix_ids])
    plain = tiny_vlm.model(input_ids=input_ids, pixel_values_videos=pixels).logits
    torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_kept_tokens_keep_original_positions_and_dropped_ones_leave_no_trace(tiny_vlm, test_split):
    prompt = tiny_vlm.prompt(test_split.items[0])
    _, video = _video(tiny_vlm, test_split)
    n = tiny_vlm.num_video_tokens
    keep = torch.zeros(n, dtype=torch.bool)
    keep[[3, 40, 41, 100]] = True
    embeds, positions = tiny_vlm.assemble(prompt, video, keep)
    p = len(prompt.prefix_ids)
    assert embeds.shape[0] == p + 4 + 1 + len(prompt.suffix_ids)
    assert positions[p:p + 5].tolist() == [p + 3, p + 40, p + 41, p + 100, p + n]  # newline keeps its id too
    scrambled = video.clone()
    scrambled[~torch.cat([keep, torch.tensor([True])])] = torch.randn(n - 4, video.shape[1])
    a = tiny_vlm.forward_sequences([tiny_vlm.assemble(prompt, video, keep)])
    b = tiny_vlm.forward_sequences([tiny_vlm.assemble(prompt, scrambled, keep)])
    torch.testing.assert_close(a, b)


@torch.no_grad()
def test_batched_scoring_equals_one_by_one(tiny_vlm, test_split):
    """One forward over many (mask, option) sequences gives the same scores as separate forwards."""
    item = test_split.items[1]
    _, video = _video(tiny_vlm, test_split, 1)
    g = torch.Generator().manual_seed(0)
    keeps = torch.rand(5, tiny_vlm.num_video_tokens, generator=g) < 0.3
    batched = tiny_vlm.score_options(item, video, keeps)  # (5, 4)
    single = torch.stack([tiny_vlm.score_options(item, video, k[None])[0] for k in keeps])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(option_scores(tiny_vlm, [item], video[None], Selection(keeps[:1])), batched[:1])
    batch = tiny_vlm.generate([item] * 3, video[None].expand(3, -1, -1), keeps[:3], max_new_tokens=3)
    assert batch == [tiny_vlm.generate([item], video[None], k[None], max_new_tokens=3)[0] for k in keeps[:3]]


@torch.no_grad()
def test_policy_inputs_hold_every_video_token_where_the_video_mask_says(tiny_vlm, test_split):
    items = test_split.items[:2]
    video = torch.stack([_video(tiny_vlm, test_split, i)[1] for i in range(2)])  # (2, N+1, D)
    inputs = tiny_vlm.policy_inputs([tiny_vlm.prompt(it) for it in items], video)
    n = tiny_vlm.num_video_tokens
    assert (inputs.video_mask.sum(1) == n).all() and inputs.grid == tiny_vlm.grid
    torch.testing.assert_close(inputs.embeds[inputs.video_mask].view(2, n, -1), video[:, :n])
    p = len(tiny_vlm.prompt(items[0]).prefix_ids)
    assert torch.equal(inputs.positions[0, inputs.video_mask[0]], torch.arange(p, p + n))  # the LLM's own position ids


def test_prompts_hold_no_unknown_token_but_the_chat_marker(tiny_vlm, test_split):
    # every word of a question and its options is in the vocabulary; the template's `<|im_start|>` reads as seven
    # <unk>, as when the recipe was validated (embedded/tokenizer.py says why it stays)
    unk = tiny_vlm.tokenizer.unk_token_id
    for item in test_split.items:
        prompt = tiny_vlm.prompt(item)
        words = prompt.prefix_ids[7:] + [i for option in prompt.option_ids for i in option]
        assert prompt.prefix_ids[:7] == [unk] * 7 and unk not in words


@torch.no_grad()
def test_save_and_from_pretrained_roundtrip(tmp_path, tiny_vlm, test_split):
    save_model_folder(tiny_vlm.model, tiny_vlm.tokenizer, tmp_path / "m", {"note": "test"})
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "kit_config.json").is_file()
    loaded = LlavaOneVisionVideoLLM.from_pretrained(tmp_path / "m", num_frames=8)
    item = test_split.items[2]
    _, video = _video(tiny_vlm, test_split, 2)
    keeps = torch.ones(1, tiny_vlm.num_video_tokens, dtype=torch.bool)
    torch.testing.assert_close(loaded.score_options(item, loaded.encode_video(
        loaded.preprocess(test_split.frames[test_split.video_of_item[2]])[None])[0], keeps),
        tiny_vlm.score_options(item, video, keeps))


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(KitInputError, match="not a model folder"):
        LlavaOneVisionVideoLLM.from_pretrained(tmp_path, num_frames=8)
    with pytest.raises(KitInputError, match="model folder not found"):
        LlavaOneVisionVideoLLM.from_pretrained(tmp_path / "missing", num_frames=8)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(KitInputError, match="cannot load model"):
        LlavaOneVisionVideoLLM.from_pretrained(tmp_path, num_frames=8)


@torch.no_grad()
def test_cached_option_scoring_equals_scoring_each_option_separately(tiny_vlm, test_split):
    """option_logprobs runs each prompt once (left-padded) and continues every option from the cache; it must
    give what separate right-padded forwards of prompt + option give, for masks of very different sizes."""
    items = test_split.items[:3]
    video = torch.stack([_video(tiny_vlm, test_split, i)[1] for i in range(3)])
    keeps = torch.rand(3, tiny_vlm.num_video_tokens, generator=torch.Generator().manual_seed(1)) < torch.tensor([[0.05], [0.5], [1.0]])
    prompts = [tiny_vlm.prompt(it) for it in items]
    cached = tiny_vlm.option_logprobs(prompts, video, keeps)  # (3, 4)
    plain = torch.stack([tiny_vlm.continuation_logprobs([p] * 4, [v] * 4, [k] * 4, p.option_ids)
                         for p, v, k in zip(prompts, video, keeps)])
    torch.testing.assert_close(cached, plain, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_cached_vision_features_give_the_video_embeddings_of_the_model(tiny_vlm, test_split):
    from cacovid_lib.embedded.small_vlm import video_embeds_from_features, vision_features

    features = vision_features(tiny_vlm, test_split.frames[:3], batch_size=2)  # (3, t, P, C)
    pixels = torch.stack([tiny_vlm.preprocess(f) for f in test_split.frames[:3]])
    torch.testing.assert_close(video_embeds_from_features(tiny_vlm.model, features), tiny_vlm.encode_video(pixels))


def test_frozen_vision_phase_leaves_the_tower_as_it_was_and_trains_the_rest(tiny_world):
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm
    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1))
    train = load_split(tiny_world, "train", 8)
    cfg = dict(batch_size=4, curriculum_steps=1, warmup_steps=1)
    train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, 8), train, VLMTrainConfig(steps=2, **cfg))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, 8), train, VLMTrainConfig(steps=3, vision_steps=0, **cfg))
    after = model.state_dict()
    tower = [k for k in before if "vision_tower" in k]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert not torch.equal(before["model.multi_modal_projector.linear_1.weight"], after["model.multi_modal_projector.linear_1.weight"])
    assert all(p.requires_grad for p in model.parameters()) and len(history) == 3  # the model is handed back unfrozen


def test_draw_items_takes_several_questions_of_each_video():
    from cacovid_lib.embedded.small_vlm import draw_items

    items_of_video = [np.arange(4 * v, 4 * v + 4) for v in range(10)]  # 10 videos, 4 questions each
    idx = draw_items(np.random.default_rng(0), items_of_video, batch=8, per_video=2)
    assert len(idx) == 8 and len(set(idx.tolist())) == 8
    videos = idx // 4
    assert sorted(np.bincount(videos)[np.bincount(videos) > 0].tolist()) == [2, 2, 2, 2]


def test_vision_phase_with_several_questions_per_video_trains_and_checks_its_config(tiny_world):
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm
    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1))
    vlm, train = LlavaOneVisionVideoLLM(model, tokenizer, 8), load_split(tiny_world, "train", 8)
    before = model.model.vision_tower.state_dict()["embeddings.patch_embedding.weight"].clone()
    cfg = dict(batch_size=4, curriculum_steps=1, warmup_steps=1)
    history = train_small_vlm(vlm, train, VLMTrainConfig(steps=2, vision_steps=1, questions_per_video=2, **cfg))
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])
    assert not torch.equal(before, model.model.vision_tower.state_dict()["embeddings.patch_embedding.weight"])
    with pytest.raises(ValueError, match=r"questions_per_video: 3 must divide batch_size \(4\)"):
        VLMTrainConfig(questions_per_video=3, **cfg)
    with pytest.raises(ValueError, match="questions_per_video: 8 is more than some video's questions"):
        train_small_vlm(vlm, train, VLMTrainConfig(steps=1, batch_size=8, questions_per_video=8))


def test_curriculum_from_the_asked_objects_to_every_token():
    from cacovid_lib.embedded.small_vlm import VLMTrainConfig, curriculum_keep_masks

    labels = np.array([[0, 0, 1, 1, 2, -1, -1, -1]] * 50)  # (B, N): objects 0, 1, 2 and background
    asked = labels == 1
    rng = np.random.default_rng(0)
    start = curriculum_keep_masks(rng, labels, 0.0, asked).numpy()
    assert (start == asked).all()  # only the asked object's tokens
    quarter = curriculum_keep_masks(rng, labels, 0.25, asked).numpy()
    assert quarter[asked].all() and not quarter[labels == -1].any() and 0.3 < quarter[(labels >= 0) & ~asked].mean() < 0.7
    three_quarters = curriculum_keep_masks(rng, labels, 0.75, asked).numpy()
    assert three_quarters[labels >= 0].all() and 0.3 < three_quarters[labels == -1].mean() < 0.7
    objects_first = curriculum_keep_masks(rng, labels, 0.0).numpy()  # curriculum_start objects: every object at once
    assert (objects_first == (labels >= 0)).all()
    with pytest.raises(ValueError, match="curriculum_start: 'question' is not valid; valid: objects, asked"):
        VLMTrainConfig(curriculum_start="question")


def test_token_word_loss_counts_every_token_only_the_object_tokens_or_weighted():
    from cacovid_lib.embedded.small_vlm import token_word_loss

    word_logp = torch.log_softmax(torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]]), dim=-1)  # (B=1, N=2, V=3)
    targets = torch.tensor([[[0, 0], [1, 2]]])  # token 0: word 0 twice; token 1: words 1 and 2
    every = -(2 * word_logp[0, 0, 0] + word_logp[0, 1, 1] + word_logp[0, 1, 2]) / 4
    assert torch.isclose(token_word_loss(word_logp, targets), every)
    only_first = torch.tensor([[True, False]])  # e.g. token 0 shows an object, token 1 background
    assert torch.isclose(token_word_loss(word_logp, targets, only_first), -word_logp[0, 0, 0])
    assert token_word_loss(word_logp, targets, torch.zeros(1, 2, dtype=torch.bool)) == 0  # nothing counted: no loss
    weighted = torch.tensor([[1.0, 0.5]])  # a background token at caption_weight 0.5
    mean = -(2 * word_logp[0, 0, 0] + 0.5 * (word_logp[0, 1, 1] + word_logp[0, 1, 2])) / (2 * 1.5)
    assert torch.isclose(token_word_loss(word_logp, targets, weighted), mean)


def test_training_threads_are_set_for_the_training_only(tiny_world):
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm
    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1))
    seen = []
    before = torch.get_num_threads()
    train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, 8), load_split(tiny_world, "train", 8),
                    VLMTrainConfig(steps=2, batch_size=4, curriculum_steps=1, warmup_steps=1, threads=1),
                    eval_fn=lambda: seen.append(torch.get_num_threads()) or {}, eval_every=1)
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_background_captions_name_tone_thirds_and_the_patterns_orientation():
    from cacovid_lib.embedded.small_vlm import background_captions
    from cacovid_lib.embedded.tokenizer import BACKGROUND_TEXTURES, BACKGROUND_TONES, CAPTION_WORDS, build_tokenizer

    yy, xx = np.mgrid[0:16, 0:16]
    patterns = {"vertical": (xx // 3) % 2, "horizontal": (yy // 3) % 2, "rising": ((xx + yy) // 3) % 2,
                "falling": ((xx - yy) // 3) % 2, "speckled": (xx // 4 + yy // 4) % 2, "plain": np.zeros_like(xx)}
    frames = np.stack([np.repeat((40 + 80 * p).astype(np.uint8)[..., None], 3, -1) for p in patterns.values()])
    frames[-1, ..., 0] = 120  # the plain cell: light red, dark green and blue
    _, texture = background_captions(frames[:, None], grid=1)  # six videos of one one-cell frame
    assert [BACKGROUND_TEXTURES[i] for i in texture[:, 0]] == list(patterns)
    tone, _ = background_captions(frames[-1:, None], grid=1)
    assert BACKGROUND_TONES[tone[0, 0]] == "tone200"
    assert set(BACKGROUND_TONES + BACKGROUND_TEXTURES) <= set(CAPTION_WORDS) and len(BACKGROUND_TONES) == 27
    assert set(CAPTION_WORDS) <= set(build_tokenizer().get_vocab())


def test_content_captions_name_every_token_and_train(tiny_world):
    from cacovid_lib.embedded.small_vlm import (SmallVLMConfig, VLMTrainConfig, build_small_vlm, content_word_targets,
                                                train_small_vlm)
    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.embedded.tokenizer import BACKGROUND_TEXTURES, BACKGROUND_TONES, build_tokenizer

    train = load_split(tiny_world, "train", 8)
    tokenizer = build_tokenizer()
    targets = content_word_targets(train, tokenizer)  # (V, N, 2)
    vocab = {i: w for w, i in tokenizer.get_vocab().items()}
    words = np.vectorize(vocab.get)(targets.numpy())
    objects, clutter = train.object_labels.reshape(len(train.frames), -1), train.clutter_labels.reshape(len(train.frames), -1)
    first = train.layouts[0]
    assert (words[0][objects[0] == 0] == [first["objects"][0]["colour"], first["objects"][0]["shape"]]).all()
    assert (words[0][clutter[0] == 1] == [first["clutter"][1]["clutter_colour"], first["clutter"][1]["shape"]]).all()
    background = (objects < 0) & (clutter < 0)
    assert background.any() and set(words[..., 0][background]) <= set(BACKGROUND_TONES)
    assert set(words[..., 1][background]) <= set(BACKGROUND_TEXTURES)
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1))
    history = train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, 8), train,
                              VLMTrainConfig(steps=2, batch_size=4, curriculum_steps=1, warmup_steps=1))
    assert len(history) == 2 and np.isfinite(history[-1]["aux_loss"])


def test_training_refuses_a_world_of_another_grid(tiny_world):
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm
    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.embedded.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    small = SmallVLMConfig(image_size=64, text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1)  # 4 x 4 tokens
    vlm = LlavaOneVisionVideoLLM(build_small_vlm(tokenizer, small), tokenizer, 8)
    with pytest.raises(KitInputError, match="the split's labels are 8 frames of 36 cells, the video LLM makes 8 frames of 4x4"):
        train_small_vlm(vlm, load_split(tiny_world, "val", 8), VLMTrainConfig(steps=1, batch_size=4))


def test_shared_offset_penalty_measures_the_tokens_common_vector():
    from cacovid_lib.embedded.small_vlm import shared_offset_penalty

    g = torch.Generator().manual_seed(0)
    centred = torch.randn(4, 50, 16, generator=g)
    centred = centred - centred.reshape(-1, 16).mean(0)  # mean exactly zero
    assert float(shared_offset_penalty(centred)) < 1e-10
    same = torch.ones(2, 5, 16) * torch.randn(16, generator=g)
    assert abs(float(shared_offset_penalty(same)) - 1.0) < 1e-6
    shifted = centred + 3.0 * torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    value = float(shared_offset_penalty(shifted))
    assert abs(value - 9.0 / float(shifted.reshape(-1, 16).pow(2).sum(-1).mean())) < 1e-5
    assert abs(float(shared_offset_penalty(5.0 * shifted)) - value) < 1e-6  # scale-free
    tokens = shifted.clone().requires_grad_(True)
    shared_offset_penalty(tokens).backward()
    assert tokens.grad.abs().sum() > 0


def test_offset_penalty_counts_from_its_start_step(tiny_world):
    from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, train_small_vlm
    from cacovid_lib.embedded.split import load_split
    from cacovid_lib.embedded.tokenizer import build_tokenizer
    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, SmallVLMConfig(text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1))
    history = train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, 8), load_split(tiny_world, "train", 8),
                              VLMTrainConfig(steps=3, batch_size=4, curriculum_steps=1, warmup_steps=1,
                                             offset_weight=2.0, offset_from_step=2))
    for row in history:
        offset = 2.0 * row["offset_penalty"] if row["step"] >= 2 else 0.0  # the penalty only from offset_from_step
        assert row["offset_penalty"] > 0
        expected = row["answer_loss"] + row["aux_loss"] + offset
        assert abs(row["loss"] - expected) < 1e-4
    with pytest.raises(ValueError, match="offset_from_step: -1 must be 0 or more"):
        VLMTrainConfig(offset_from_step=-1)
