"""Build and train the embedded default's small video LLM (a real `LlavaOnevisionForConditionalGeneration`).

The recipe, and why each piece is there (docs/decisions.md links the validation runs behind each):
1. Projector alignment with dense labels from the generator: every projected video token is pushed, through the
   LLM's own (tied) word embeddings, towards a two-word caption of what it shows: an object its colour and shape
   ("red circle"), a clutter item its colour and shape, a background cell its tone and texture read from its pixels
   ("tone120 rising"). Retrieval in the LLM then matches like with like, and the tokens no question names stay as
   varied as their content instead of folding into one cone, as real encoders aligned on captions of everything in
   a picture do. Non-object tokens count at `caption_weight`, so that binding the asked objects forms first.
2. The label loss cannot see a shift that moves every word's logit alike, so the tokens would drift into one shared
   offset; `offset_weight` penalises it (shared_offset_penalty) from `offset_from_step` on, once binding has formed.
3. Options are scored by their text ("red circle"), so each answer is found by two one-hop lookups
   (is "red" present? is the red thing a circle?) instead of a question -> letter -> video chain.
4. A token curriculum: the first steps keep only the tokens of the object the question asks about, then add the
   video's other objects, then a growing share of the background, so the LLM learns retrieval among a handful of
   tokens before it must find them among all of them.
5. Random video-token dropout afterwards (keep ratio drawn per batch) so the model tolerates pruning, as real
   video LLMs do.
6. Two phases, as real video LLMs are trained in stages: the vision tower learns with everything else for the
   first `vision_steps` (its dense labels teach it in a few hundred steps), then it is frozen and its features of
   every training video are computed once, so the remaining steps run only the projector and the LLM. While the
   tower trains, a step takes several questions of each of its videos (`questions_per_video`), so it encodes
   fewer videos.
7. AdamW with warm-up and cosine decay; everything seeded.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from cacovid_lib.data.schema import asked_token_mask
from cacovid_lib.embedded.tokenizer import BACKGROUND_TEXTURES, BACKGROUND_TONES
from cacovid_lib.embedded.world import WorldSpec, frame_cells
from cacovid_lib.io_utils import COUNT, POSITIVE, RATIO, SEED, KitInputError, Range, check_ranges
from cacovid_lib.models.base import VideoLLM


@dataclass
class SmallVLMConfig:
    """Sizes of the small video LLM."""

    vision_hidden: int = 64  # SigLIP hidden size
    vision_layers: int = 2  # SigLIP encoder layers
    image_size: int = 96  # frame side in pixels: the world's frame_size
    patch_size: int = 8  # SigLIP patch side -> 12x12 patches, pooled 2x2 to the world's 6x6 grid of video tokens
    text_hidden: int = 128  # Qwen2 hidden size (D)
    text_layers: int = 6  # Qwen2 decoder layers: FastV's first layer is then a sixth of the LLM, not a third
    text_heads: int = 8  # Qwen2 attention heads
    text_kv_heads: int = 4  # Qwen2 key/value heads (grouped-query attention, as in Qwen2-7B)

    def __post_init__(self):
        check_ranges(self, vision_hidden=COUNT, vision_layers=COUNT, image_size=COUNT, patch_size=COUNT,
                     text_hidden=COUNT, text_layers=COUNT, text_heads=COUNT, text_kv_heads=COUNT)
        if self.image_size % (2 * self.patch_size):
            raise KitInputError(f"image_size: {self.image_size} is not a multiple of 2 x patch_size ({self.patch_size}): "
                                "the patches are pooled 2 x 2 into video tokens")


def check_matches_world(cfg: SmallVLMConfig, spec: WorldSpec) -> None:
    """The pooled video tokens must be the world's grid cells (the per-token labels come from the layout):
    image_size == frame_size and image_size / patch_size / 2 == grid. One KitInputError line otherwise."""
    side = cfg.image_size / cfg.patch_size / 2
    if cfg.image_size != spec.frame_size or side != spec.grid:
        raise KitInputError(f"vlm.model: image_size {cfg.image_size} / patch_size {cfg.patch_size} gives {side:g}x{side:g} "
                            f"tokens of a {cfg.image_size}-pixel frame; the world has {spec.grid}x{spec.grid} cells of a "
                            f"{spec.frame_size}-pixel frame (set image_size {spec.frame_size}, patch_size "
                            f"{spec.frame_size // (2 * spec.grid)})")


@dataclass
class VLMTrainConfig:
    """Training recipe of the small video LLM."""

    steps: int = 2500  # optimiser steps
    batch_size: int = 16  # items per step
    lr: float = 2e-3  # peak learning rate (AdamW)
    warmup_steps: int = 100  # linear warm-up before cosine decay to 10% of `lr`
    weight_decay: float = 0.01  # AdamW weight decay
    aux_weight: float = 1.0  # weight of the per-token caption loss (projector alignment)
    caption_weight: float = 0.3  # a background or clutter token's weight in that loss, an object token's being 1
    offset_weight: float = 1.0  # weight of shared_offset_penalty on the projected video tokens (0: none)
    offset_from_step: int = 1000  # the penalty counts from this step on (0: throughout); from step 0 it delays the
    # point where binding forms past the tower's freeze
    full_keep_prob: float = 0.5  # share of batches that keep every video token
    min_keep_ratio: float = 0.02  # other batches keep a ratio drawn uniformly in [min, max]
    max_keep_ratio: float = 0.6
    curriculum_steps: int = 1000  # token curriculum: first keep only object tokens, then add background linearly
    curriculum_start: Literal["objects", "asked"] = "asked"  # asked: the curriculum's first half starts from the
    # question's own objects and adds the video's other objects (one object to several), its second half the
    # background; objects: every object token from the start
    vision_steps: int | None = 600  # then the vision tower is frozen and its features cached (None: trained throughout)
    questions_per_video: int = 2  # while the tower trains, a step's items come from batch_size / this many videos
    seed: int = 0  # seeds init, batches and dropout
    threads: int | None = None  # torch CPU threads while training (None: the runtime's, params.yaml runtime.threads). Float sums, and with them
    # whether and when binding forms, depend on it

    def __post_init__(self):
        check_ranges(self, steps=COUNT, batch_size=COUNT, lr=POSITIVE, warmup_steps=Range(0), weight_decay=Range(0),
                     aux_weight=Range(0), caption_weight=Range(0), offset_weight=Range(0), full_keep_prob=Range(0, 1),
                     min_keep_ratio=RATIO, max_keep_ratio=RATIO, curriculum_steps=Range(0), seed=SEED)
        if self.vision_steps is not None and self.vision_steps < 0:
            raise KitInputError(f"vision_steps: {self.vision_steps} must be at least 0 (or null: trained throughout)")
        if self.threads is not None and self.threads < 1:
            raise KitInputError(f"threads: {self.threads} must be at least 1 (or null: the runtime's thread count)")
        if self.curriculum_start not in ("objects", "asked"):
            raise ValueError(f"curriculum_start: {self.curriculum_start!r} is not valid; valid: objects, asked")
        if self.offset_from_step < 0:
            raise ValueError(f"offset_from_step: {self.offset_from_step} must be 0 or more")
        if self.questions_per_video < 1 or self.batch_size % self.questions_per_video:
            raise ValueError(f"questions_per_video: {self.questions_per_video} must divide batch_size ({self.batch_size})")


def vision_config(cfg: SmallVLMConfig):
    """The small SigLIP vision tower's config (LlavaOnevision builds its tower from it)."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=max(1, cfg.vision_hidden // 32), image_size=cfg.image_size, patch_size=cfg.patch_size,
        vision_use_head=False,
    )


def build_small_vlm(tokenizer, cfg: SmallVLMConfig, seed: int = 0):
    """A randomly initialised LLaVA-OneVision with small SigLIP and Qwen2 configs."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config

    vision = vision_config(cfg)
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 3,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads, num_key_value_heads=cfg.text_kv_heads,
        max_position_embeddings=1024, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", tie_word_embeddings=True, image_grid_pinpoints=[[cfg.image_size, cfg.image_size]],
    )
    torch.manual_seed(seed)
    return LlavaOnevisionForConditionalGeneration(config)


PATTERNED_STD = 9.0  # a background cell whose grey levels spread more than this is "patterned", else "plain" (about half)
TONE_SPLITS = (57, 93)  # a channel is dark, mid or light (thirds of the textures' 20..130)
ORIENTED_COHERENCE = 0.5  # a patterned cell whose edges share one orientation at least this much


def background_captions(frames: np.ndarray, grid: int, chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's tone and texture, read from the pixels: frames (V, t, H, W, 3) uint8 -> two (V, t*grid*grid) int
    arrays, indices into BACKGROUND_TONES (9r + 3g + b, each channel's mean split at TONE_SPLITS) and
    BACKGROUND_TEXTURES (plain: the cell's grey-level standard deviation at most PATTERNED_STD; otherwise by the
    orientation of its grey-level gradients, from their structure tensor; speckled when their coherence is below
    ORIENTED_COHERENCE, as noise and checks). Meant for cells that show background only (a cell with an object or
    clutter item gets that item's caption instead)."""
    v, size = len(frames), frames.shape[2]
    cell = size // grid
    tones, textures = [], []
    for start in range(0, v, chunk):
        x = frame_cells(frames[start:start + chunk], grid).astype(np.float32)  # (B, N, c, c, 3)
        grey = x.mean(axis=-1)  # (B, N, c, c)
        x = x.reshape(*x.shape[:2], cell * cell, 3)  # (B, N, c*c, 3)
        patterned = grey.reshape(*grey.shape[:2], -1).std(axis=-1) > PATTERNED_STD  # (B, N)
        level = np.digitize(x.mean(axis=2), TONE_SPLITS)  # (B, N, 3) in 0..2
        tones.append(9 * level[..., 0] + 3 * level[..., 1] + level[..., 2])
        dx, dy = np.diff(grey, axis=-1), np.diff(grey, axis=-2)  # (B, N, c, c-1), (B, N, c-1, c)
        gx, gy = dx[..., 1:, :] + dx[..., :-1, :], dy[..., 1:] + dy[..., :-1]  # (B, N, c-1, c-1): each 2 x 2 block's gradient
        jxx, jyy, jxy = (gx * gx).sum((-2, -1)), (gy * gy).sum((-2, -1)), (gx * gy).sum((-2, -1))  # (B, N)
        coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-6)
        angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # the gradients' direction in (-pi/2, pi/2], rows down
        orientation = np.round(angle / (np.pi / 4)).astype(int) % 4  # 0: across x (vertical edges), 1: rising, 2: horizontal, 3: falling
        texture = np.where(coherence >= ORIENTED_COHERENCE, 1 + orientation, len(BACKGROUND_TEXTURES) - 1)
        textures.append(np.where(patterned, texture, 0))
    return np.concatenate(tones), np.concatenate(textures)


def content_word_targets(split, tokenizer) -> torch.Tensor:
    """Per video token, the vocabulary ids of a two-word caption of what it shows: an object its colour and shape, a
    clutter item its colour and shape, a background cell its tone and texture (background_captions):
    (V, t*h*w, 2). The tokenizer must hold tokenizer.CAPTION_WORDS (build_tokenizer's does)."""
    ids = tokenizer.convert_tokens_to_ids
    v = len(split.frames)
    objects = split.object_labels.reshape(v, -1)  # (V, N)
    clutter = split.clutter_labels.reshape(v, -1)  # (V, N)
    grid = int(round(math.sqrt(split.object_labels.shape[-1])))
    tone, texture = background_captions(split.frames, grid)  # (V, N) each
    out = np.stack([np.array([ids(w) for w in BACKGROUND_TONES])[tone],
                    np.array([ids(w) for w in BACKGROUND_TEXTURES])[texture]], axis=-1)  # (V, N, 2)
    for i, layout in enumerate(split.layouts):
        for k, thing in enumerate(layout["clutter"]):
            out[i, clutter[i] == k] = (ids(thing["clutter_colour"]), ids(thing["shape"]))
        for k, obj in enumerate(layout["objects"]):
            out[i, objects[i] == k] = (ids(obj["colour"]), ids(obj["shape"]))
    if (out == tokenizer.unk_token_id).any():
        raise ValueError("content_word_targets: a caption word is not in the tokenizer (build it with build_tokenizer())")
    return torch.from_numpy(out)


def token_word_loss(word_logp: torch.Tensor, targets: torch.Tensor, counted: torch.Tensor | None = None) -> torch.Tensor:
    """The auxiliary label loss: mean negative log-likelihood of each video token's two target words. word_logp
    (B, N, V) log-probabilities over the vocabulary, targets (B, N, 2) word ids, counted (B, N) bool: the tokens
    that count, or float: each token's weight (None: all equally; no counted token at all gives 0)."""
    logp = word_logp.gather(-1, targets)  # (B, N, 2)
    if counted is None:
        return -logp.mean()
    return -(logp.sum(-1) * counted).sum() / (2 * counted.sum().clamp(min=1))


def shared_offset_penalty(tokens: torch.Tensor) -> torch.Tensor:
    """How much of the video tokens is one shared offset: the squared norm of their mean over their mean squared
    norm, tokens (B, N, D) -> scalar in [0, 1] (0: centred; 1: all tokens the same vector). A label loss through
    tied word embeddings leaves free any shift that moves every word's logit alike, so without a penalty the tokens
    drift into a common offset and every pair's cosine rises with it (a cone, as CLIP-like encoders show). The mean
    is over the whole batch, not per video, so a video's own content keeps its tokens as alike as it is."""
    flat = tokens.reshape(-1, tokens.shape[-1])  # (B*N, D)
    return flat.mean(0).pow(2).sum() / flat.pow(2).sum(-1).mean().clamp(min=1e-12)


def random_keep_masks(rng: np.random.Generator, batch: int, n: int, cfg: VLMTrainConfig) -> torch.Tensor:
    """(batch, n) bool: all-ones for a share of batches, otherwise random subsets of one random size
    (one size per batch keeps the padded length short, which is most of the step time)."""
    if rng.random() < cfg.full_keep_prob:
        return torch.ones(batch, n, dtype=torch.bool)
    k = int(round(rng.uniform(cfg.min_keep_ratio, cfg.max_keep_ratio) * n))
    order = np.argsort(rng.random((batch, n)), axis=1)[:, :k]  # (batch, k) random distinct indices per row
    keeps = np.zeros((batch, n), bool)
    np.put_along_axis(keeps, order, True, axis=1)
    return torch.from_numpy(keeps)


def curriculum_keep_masks(rng, labels: np.ndarray, progress: float, asked: np.ndarray | None = None) -> torch.Tensor:
    """(batch, n) bool keep-masks of the token curriculum at `progress` in [0, 1). Without `asked`: every object
    token plus a `progress` share of the others. With `asked` (batch, n) bool, the tokens of the objects each
    question asks about: in the first half, those plus a growing share (0 -> 1) of the video's other objects' tokens;
    in the second half, every object token plus a growing share of the background. Retrieval among a few tokens is
    learned fast; the rest is added back as training goes on."""
    objects = labels >= 0  # (batch, n)
    draw = rng.random(labels.shape)  # (batch, n)
    if asked is None:
        return torch.from_numpy(objects | (draw < progress))
    if progress < 0.5:
        return torch.from_numpy(asked | (objects & (draw < 2 * progress)))
    return torch.from_numpy(objects | (draw < 2 * progress - 1))


def draw_items(rng: np.random.Generator, items_of_video: list[np.ndarray], batch: int, per_video: int) -> np.ndarray:
    """(batch,) item indices: batch / per_video distinct videos, per_video distinct questions of each."""
    videos = rng.choice(len(items_of_video), batch // per_video, replace=False)
    return np.concatenate([rng.choice(items_of_video[v], per_video, replace=False) for v in videos])


def lr_at(step: int, cfg: VLMTrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def vision_features(vlm: VideoLLM, videos, batch_size: int = 32) -> torch.Tensor:
    """The vision tower's output features of every video, the ones `get_video_features` projects:
    videos (V, t, H, W, 3) uint8 -> (V, t, P, C) with P patches per frame."""
    tower, layer = vlm.model.model.vision_tower, vlm.model.config.vision_feature_layer
    out = []
    for start in range(0, len(videos), batch_size):
        pixels = torch.stack([vlm.preprocess(v) for v in videos[start:start + batch_size]])  # (B, t, 3, S, S)
        hidden = tower(pixels.flatten(0, 1), output_hidden_states=True).hidden_states[layer]  # (B*t, P, C)
        out.append(hidden.view(*pixels.shape[:2], *hidden.shape[1:]))
    return torch.cat(out)


def video_embeds_from_features(model, features: torch.Tensor) -> torch.Tensor:
    """What `get_video_features` makes of the vision tower's features (its "full" feature strategy): project,
    pool 2x2, append the newline embedding. features (B, t, P, C) -> (B, t*h*w + 1, D)."""
    b, t = features.shape[:2]
    video = model.model.apply_pooling(model.model.multi_modal_projector(features.flatten(0, 1)))  # (B*t, h*w, D)
    newline = model.model.image_newline[None, None].expand(b, 1, -1)  # (B, 1, D)
    return torch.cat([video.reshape(b, -1, video.shape[-1]), newline], dim=1)


def train_small_vlm(vlm: VideoLLM, split, cfg: VLMTrainConfig, eval_fn=None, eval_every: int = 0) -> list[dict]:
    """Train `vlm.model` on `split` (a VideoQASplit with layouts): every weight, the vision tower only for its first
    `cfg.vision_steps` steps (0: frozen throughout). Returns the loss history."""
    t, h, w = vlm.grid
    if split.object_labels.shape[1:] != (t, h * w):
        frames, cells = split.object_labels.shape[1:]
        raise KitInputError(f"train_small_vlm: the split's labels are {frames} frames of {cells} cells, the video LLM makes "
                            f"{t} frames of {h}x{w} video tokens (check_matches_world)")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)
    try:
        return _train(vlm, split, cfg, eval_fn, eval_every)
    finally:
        torch.set_num_threads(threads)


def _train(vlm: VideoLLM, split, cfg: VLMTrainConfig, eval_fn, eval_every: int) -> list[dict]:
    model, tok = vlm.model, vlm.tokenizer
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    targets = content_word_targets(split, tok)  # (num_videos, N, 2)
    prompts = [vlm.prompt(item) for item in split.items]
    eos = tok.eos_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    model.train()
    features = None  # (num_videos, t, P, C) frozen vision-tower features, once the vision phase is over
    vision_phase = cfg.vision_steps is None or cfg.vision_steps > 0
    pixels = torch.stack([vlm.preprocess(v) for v in split.frames]) if vision_phase else None  # (V, t, 3, S, S)
    items_of_video = [np.flatnonzero(split.video_of_item == v) for v in range(len(split.frames))]
    if cfg.questions_per_video > min(len(i) for i in items_of_video):
        raise ValueError(f"questions_per_video: {cfg.questions_per_video} is more than some video's questions")
    bar = tqdm(range(cfg.steps), desc="train video LLM", mininterval=5)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        if step == cfg.vision_steps:  # vision phase over: freeze the tower, compute its features of every video once
            model.model.vision_tower.requires_grad_(False)
            features, pixels = vision_features(vlm, split.frames), None
        # batch: items, their videos, random keep-masks
        if features is None and cfg.questions_per_video > 1:
            idx = draw_items(rng, items_of_video, cfg.batch_size, cfg.questions_per_video)
        else:
            idx = rng.choice(len(split), cfg.batch_size, replace=False)
        vids = split.video_of_item[idx]
        if features is None:  # the tower encodes each distinct video of the batch once
            unique, inverse = np.unique(vids, return_inverse=True)
            video_embeds = vlm.encode_video(pixels[unique])[torch.from_numpy(inverse)]  # (B, N+1, D)
        else:
            video_embeds = video_embeds_from_features(model, features[vids])  # (B, N+1, D)
        n = video_embeds.shape[1] - 1
        if step < cfg.curriculum_steps:
            labels = split.object_labels[vids].reshape(len(idx), n)  # (B, N) object index or -1
            asked = None if cfg.curriculum_start == "objects" else \
                np.stack([asked_token_mask(row, split.items[i]) for row, i in zip(labels, idx)])  # (B, N)
            keeps = curriculum_keep_masks(rng, labels, step / cfg.curriculum_steps, asked)
        else:
            keeps = random_keep_masks(rng, cfg.batch_size, n, cfg)  # (B, N)
        # caption loss: each projected video token should read as its caption's words through the tied embeddings
        word_logp = torch.log_softmax(model.lm_head(video_embeds[:, :n]), dim=-1)  # (B, N, V)
        is_object = torch.from_numpy(split.object_labels[vids].reshape(len(idx), n) >= 0)  # (B, N)
        weights = is_object + (~is_object) * cfg.caption_weight  # (B, N) token weights
        aux = token_word_loss(word_logp, targets[vids], weights)
        offset = shared_offset_penalty(video_embeds[:, :n])  # how much of the projected tokens is one shared vector
        # answer loss: teacher-forced correct option text + end of turn, on the compressed sequence
        conts = [prompts[i].option_ids[split.answers[i]] + [eos] for i in idx]
        logp = vlm.continuation_logprobs([prompts[i] for i in idx], video_embeds, keeps, conts)
        answer = -(logp / torch.tensor([len(c) for c in conts])).mean()
        offset_weight = cfg.offset_weight if step >= cfg.offset_from_step else 0.0
        loss = answer + cfg.aux_weight * aux + offset_weight * offset
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        record = {"step": step, "loss": loss.item(), "answer_loss": answer.item(), "aux_loss": aux.item(),
                  "offset_penalty": offset.item(), "lr": lr_at(step, cfg)}
        if eval_fn is not None and eval_every and (step + 1) % eval_every == 0:
            model.eval()
            record.update(eval_fn())
            model.train()
        history.append(record)
        bar.set_postfix(answer=f"{answer.item():.3f}", aux=f"{aux.item():.3f}", refresh=False)
    model.requires_grad_(True)
    model.eval()
    return history


def config_dict(model_cfg: SmallVLMConfig, train_cfg: VLMTrainConfig) -> dict:
    return {"model": asdict(model_cfg), "train": asdict(train_cfg)}


def save_model_folder(model, tokenizer, folder, resolved_config: dict) -> None:
    """`save_pretrained` model + tokenizer + the resolved training config into `folder`, atomically: written to a
    temporary sibling folder, then renamed into place."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "kit_config.json").write_text(json.dumps(resolved_config, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
