"""Training-free token-selection baselines, in the same harness as the CaCoVID policy.

Every baseline is a keep rule like the policy's (`keep_rule(idx, video_embeds) -> Selection`): it sees the
video-token embeddings (B, N+1, D) of a batch of items (the last one is the never-pruned newline), and
through `vlm` the prompts and the model, and keeps exactly `floor(ρ·N)` video tokens per item.
A `Selection` is a keep-mask plus, for the two methods that need them, merged embeddings (VisionZip, the
temporal merge) or a layer inside the LLM after which the dropped tokens are removed (FastV).

Each method follows its paper's description; its docstring names the paper and what is simplified.
FastV and the temporal merge's pruning step rank by the last prompt token's attention row inside the LLM, which
they compute alone (`last_query_attention`: no attention map is made). VisionZip needs the attention weights
of the vision encoder's last layer, which it computes alone (`vision_attention_received`: no other layer's map).
"""
from __future__ import annotations

import math
import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from cacovid_lib.compare.keep import Selection
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.selection import density_peak_scores
from cacovid_lib.models.base import VideoLLM


def token_budget(num_tokens: int, retention: float) -> int:
    """floor(ρ·N) tokens, at least one; ρ must lie in (0, 1]."""
    if not 0 < retention <= 1:
        raise KitInputError(f"retention: {retention} is outside (0, 1]")
    return max(1, math.floor(retention * num_tokens))


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N) scores -> (B, N) bool with the k highest per row True."""
    keeps = torch.zeros_like(scores, dtype=torch.bool)
    return keeps.scatter(1, scores.topk(k, dim=1).indices, True)


@contextmanager
def eager_attention(model):
    """Run `model` with the eager attention implementation (the only one that returns attention weights)."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


def remembered(score_fn):
    """score_fn(idx, video_embeds) -> (B, N), computed once per batch of item indices and then looked up: the
    scores a method ranks by do not depend on the retention ratio, so a sweep over ratios can share them
    (pass the result as the rules' `scores`)."""
    cache: dict[tuple[int, ...], torch.Tensor] = {}

    def scores(idx, video_embeds):
        key = tuple(int(i) for i in idx)
        if key not in cache:
            cache[key] = score_fn(idx, video_embeds)
        return cache[key]

    return scores


# ---- uniform (random: evaluation.random_keep_rule) ----------------------------------------------
def uniform_rule(vlm: VideoLLM, retention: float):
    """Evenly spaced in time and space: the frame budget is split evenly over frames (earlier frames take the
    remainder), and each frame keeps its share at evenly spaced raster positions, shifted from frame to frame
    so that over time every position is visited."""
    t, h, w = vlm.grid

    def rule(idx, video_embeds):
        n = t * h * w
        k = token_budget(n, retention)
        per_frame = [k // t + (j < k % t) for j in range(t)]
        keeps = torch.zeros(n, dtype=torch.bool, device=video_embeds.device)
        for j, c in enumerate(per_frame):
            if c:
                stride = h * w / c
                cols = (torch.arange(c, device=keeps.device) * stride + (j * stride / t) % stride).long()  # (c,) evenly spaced, shifted
                keeps[j * h * w + cols] = True
        return Selection(keeps[None].expand(len(idx), -1).clone())

    return rule


# ---- FastV -----------------------------------------------------------------------------------------
def _rotary_function(attention: torch.nn.Module):
    """The rotary function the attention module's own modeling file applies (`apply_rotary_pos_emb` of Qwen2's or
    Qwen2.5-VL's module: the 3-D ids of the latter are already folded into cos and sin by its rotary embedding)."""
    rope = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb", None)
    if rope is None:
        raise KitInputError(f"FastV's scoring: {type(attention).__module__} has no apply_rotary_pos_emb")
    return rope


def _rotated(rope, states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """states (B, heads, L, hd) rotated by `rope`, which rotates a (query, key) pair at once: `states` goes in as
    the query, and its first head as the key, whose rotation is dropped (one head costs the least)."""
    return rope(states, states[:, :1], cos, sin)[0]


@torch.no_grad()
def last_query_attention(lm, embeds: torch.Tensor, positions: torch.Tensor, padding_mask: torch.Tensor | None,
                         layer: int) -> torch.Tensor:
    """The last position's attention over every position at decoder layer `layer` (0-based) of the language model
    `lm` (its `.layers`, `.rotary_emb`, `.config`), averaged over heads: (B, L) float32, the row that eager attention's
    `.attentions[layer][:, :, -1].mean(1)` holds, without any attention map.

    Layers 0..layer-1 run as the model's own forward runs them (its attention implementation, its masks); layer
    `layer` computes only what the row needs: its input norm, the query of the last position, the keys of all
    positions, the rotary embedding, grouped-query heads, scaling, the padding mask and a float32 softmax.
    embeds (B, L, D) left-padded so that every row's last position is its last token; positions as the LM takes
    them; padding_mask (B, L), 0 on padding, or None where no row is padded."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    layers = lm.layers
    if not 0 <= layer < len(layers):
        raise KitInputError(f"FastV's layer: {layer} is outside the language model's layers 0..{len(layers) - 1}")
    layer_types = getattr(lm.config, "layer_types", None) or ["full_attention"] * len(layers)
    if layer_types[layer] != "full_attention":
        raise KitInputError(f"FastV's layer: {layer} has {layer_types[layer]}, and its scoring reads full attention only")
    hidden = embeds  # (B, L, D)
    cos, sin = lm.rotary_emb(hidden, positions)  # (B, L, hd) each
    # the masks as the model's forward builds them; no position ids: the rows are never packed sequences, and
    # reading the ids to detect packing would need their values
    build = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}
    masks = {kind: build[kind](config=lm.config, inputs_embeds=hidden, attention_mask=padding_mask,
                               past_key_values=None, position_ids=None) for kind in set(layer_types[:layer])}
    layer_position_ids = positions if positions.dim() == 2 else None  # Qwen2.5-VL's text model hands its layers none
    for i in range(layer):
        hidden = layers[i](hidden, attention_mask=masks[layer_types[i]], position_ids=layer_position_ids,
                           position_embeddings=(cos, sin))
    attention = layers[layer].self_attn
    normed = layers[layer].input_layernorm(hidden)  # (B, L, D)
    b, length, hd = normed.shape[0], normed.shape[1], attention.head_dim
    query = attention.q_proj(normed[:, -1:]).view(b, 1, -1, hd).transpose(1, 2)  # (B, H, 1, hd)
    keys = attention.k_proj(normed).view(b, length, -1, hd).transpose(1, 2)  # (B, KV, L, hd)
    rope = _rotary_function(attention)
    query = _rotated(rope, query, cos[:, -1:], sin[:, -1:])
    keys = _rotated(rope, keys, cos, sin)
    # grouped-query attention: query head kv * G + g reads key head kv (repeat_kv's order); grouping the queries
    # spares the (B, H, L, hd) copy of the keys
    groups = attention.num_key_value_groups
    logits = query.reshape(b, -1, groups, hd) @ keys.transpose(2, 3)  # (B, KV, G, L)
    logits = logits.reshape(b, -1, length) * attention.scaling  # (B, H, L)
    if padding_mask is not None:
        logits = logits.masked_fill(~padding_mask.bool()[:, None, :], float("-inf"))
    return logits.softmax(-1, dtype=torch.float32).mean(1)  # (B, L)


@torch.no_grad()
def last_token_attention(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, layer: int) -> torch.Tensor:
    """Attention each video token receives from the last prompt token at decoder layer `layer` (0-based),
    averaged over heads, with every video token in the sequence: (B, N+1, D) -> (B, N).
    The prompts are left-padded, so the last column is every row's last prompt token; only layers 0..layer-1 run
    in full, and layer `layer` computes the last token's attention row alone (`last_query_attention`)."""
    prompts = [vlm.prompt(item) for item in items]
    n = video_embeds.shape[1] - 1
    # on the CPU: assemble takes the kept indices with nonzero, which a meta tensor cannot answer, and moves them to
    # the model's device itself
    every = torch.ones(n, dtype=torch.bool, device="cpu")
    seqs = [vlm.assemble(p, v, every) for p, v in zip(prompts, video_embeds)]
    embeds, positions, mask, pads = vlm.left_padded(seqs)  # (B, L, D), the LM's position ids, (B, L), B ints
    # unpadded rows need no mask: the model then builds none (sdpa's causal path) and no mask value is read
    last = last_query_attention(vlm.language_model, embeds, positions, mask if any(pads) else None, layer)  # (B, L)
    starts = [pad + len(p.prefix_ids) for p, pad in zip(prompts, pads)]
    return torch.stack([row[s:s + n] for row, s in zip(last, starts)])  # (B, N)


def last_token_scores(vlm: VideoLLM, items: list[dict], layer: int):
    """last_token_attention as a score function of (item indices, video_embeds) -> (B, N)."""
    return lambda idx, video_embeds: last_token_attention(vlm, [items[i] for i in idx], video_embeds, layer)


def fastv_rule(vlm: VideoLLM, items: list[dict], retention: float, layer: int = 1, inside_llm: bool = True, scores=None):
    """FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024): rank video tokens by the
    attention they receive from the last text token at an early layer and keep the top ones.
    `inside_llm=True` is FastV proper: every token goes through layers 0..`layer`, then the unkept video tokens
    are dropped from the hidden states (FastV's K = layer + 1). `inside_llm=False` is the input-level variant:
    the same ranking, but the tokens are dropped before the LLM (one extra partial forward for the scores).
    Simplification: the ranking uses the last prompt token's attention, head-averaged, as FastV does; the
    whole forward is re-run for the scores (FastV fuses it into the one forward). `scores`: a shared
    `last_token_scores` (e.g. `remembered`), else computed per call."""
    scores = scores or last_token_scores(vlm, items, layer)

    def rule(idx, video_embeds):
        attention = scores(idx, video_embeds)  # (B, N)
        keeps = top_k_mask(attention, token_budget(attention.shape[1], retention))
        return Selection(keeps, prune_after_layer=layer if inside_llm else None)

    return rule


# ---- VisionZip -------------------------------------------------------------------------------------
@torch.no_grad()
def vision_attention_received(vlm: VideoLLM, pixels: torch.Tensor, frames_per_chunk: int = 4) -> torch.Tensor:
    """Attention each pooled video token receives inside the vision encoder's last layer (the layer whose output
    the LLM sees), averaged over heads and queries and pooled like the tokens: (B, t, 3, S, S) -> (B, t*h*w).

    No attention map but the last layer's is made: layers 0..L-2 run as the tower's own forward runs them (its
    attention implementation), and the last layer computes only its input norm, queries and keys and a float32
    softmax(q k^T * scale), the weights eager attention's `.attentions[-1]` holds. Frames do not attend to each
    other in the tower, so it runs `frames_per_chunk` frames at a time: the peak is one chunk's activations and one
    chunk's (frames, heads, P, P) map."""
    if frames_per_chunk < 1:
        raise KitInputError(f"frames_per_chunk: {frames_per_chunk} must be at least 1")
    b, t = pixels.shape[:2]
    tower = vlm.model.model.vision_tower  # SiglipVisionModel: embeddings, encoder.layers
    # the tower's last layer, as the old `.attentions[-1]` read it, whatever vision_feature_layer says
    *early, last = tower.encoder.layers
    attention = last.self_attn
    frames = pixels.flatten(0, 1)  # (B*t, 3, S, S)
    received = []
    for start in range(0, frames.shape[0], frames_per_chunk):
        # only the chunk is cast and moved: the whole video's copy would outgrow the chunk's map at 32 frames
        hidden = tower.embeddings(frames[start:start + frames_per_chunk].to(vlm.device, vlm.model.dtype))  # (c, P, D)
        for layer in early:
            hidden = layer(hidden, None)
        normed = last.layer_norm1(hidden)  # (c, P, D)
        c, p = normed.shape[:2]
        # contiguous per head: matmul would otherwise copy the transposed views into its own temporaries
        query = attention.q_proj(normed).view(c, p, -1, attention.head_dim).transpose(1, 2).to(
            torch.float32, memory_format=torch.contiguous_format)  # (c, heads, P, hd)
        key = attention.k_proj(normed).view(c, p, -1, attention.head_dim).transpose(1, 2).to(
            torch.float32, memory_format=torch.contiguous_format)  # (c, heads, P, hd)
        del normed, hidden
        # scaled and soft-maxed in place: a second (c, heads, P, P) map would double the peak
        weights = (query @ key.transpose(2, 3)).mul_(attention.scale)  # (c, heads, P, P)
        del query, key
        weights -= weights.amax(-1, keepdim=True)
        weights.exp_()
        weights /= weights.sum(-1, keepdim=True)
        received.append(weights.mean(dim=(1, 2)))  # (c, P): mean over heads and queries
        del weights
    received = torch.cat(received)  # (B*t, P)
    side = math.isqrt(received.shape[1])
    _, h, w = vlm.grid
    pooled = F.interpolate(received.view(-1, 1, side, side), size=(h, w), mode="bilinear")  # as the video tokens are pooled
    return pooled.view(b, t * h * w)


def visionzip_select(attention: torch.Tensor, video_embeds: torch.Tensor, k: int, dominant_share: float = 54 / 64) -> Selection:
    """VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models", CVPR 2025):
    keep the `dominant_share` of the budget with the most vision-encoder attention (dominant tokens), and
    spend the rest on contextual tokens: evenly spaced targets among the others, each the mean of the remaining
    tokens most similar to it (dot product of embeddings). attention (B, N), video_embeds (B, N+1, D).
    Simplifications: SigLIP has no CLS token, so 'attention' is the mean attention received (as VisionZip does
    for SigLIP models); similarity uses the projected video-token embeddings instead of the encoder's keys;
    selection is over the whole video rather than per frame (budgets at 5% are below one token per frame).
    The 54:10 split is the paper's for 64 kept tokens."""
    b, n = attention.shape
    n_dominant = min(k, max(1, round(dominant_share * k)))
    n_context = k - n_dominant
    keeps = top_k_mask(attention, n_dominant)  # (B, N)
    merged = video_embeds.clone()
    for row in range(b):
        rest = torch.nonzero(~keeps[row], as_tuple=True)[0]  # (R,) candidates for contextual tokens
        if n_context == 0 or rest.numel() == 0:
            continue
        targets = rest[torch.linspace(0, rest.numel() - 1, n_context, device=rest.device).round().long()]  # (C,)
        x = F.normalize(video_embeds[row, rest].float(), dim=-1)  # (R, D)
        assign = (x @ F.normalize(video_embeds[row, targets].float(), dim=-1).T).argmax(1)  # (R,) nearest target
        assign[torch.searchsorted(rest, targets)] = torch.arange(n_context, device=assign.device)  # each target in its own group
        for c, target in enumerate(targets):
            merged[row, target] = video_embeds[row, rest[assign == c]].mean(0)
        keeps[row, targets] = True
    return Selection(keeps, video_embeds=merged)


def vision_scores(vlm: VideoLLM, split):
    """vision_attention_received of the items' frames as a score function of (item indices, video_embeds) -> (B, N)
    (re-runs the vision encoder on the batch's frames)."""

    def scores(idx, video_embeds):
        pixels = torch.stack([vlm.preprocess(split.frames[v]) for v in split.video_of_item[idx]])
        return vision_attention_received(vlm, pixels)

    return scores


def visionzip_rule(vlm: VideoLLM, split, retention: float, dominant_share: float = 54 / 64, scores=None):
    """VisionZip as a keep rule; `scores`: a shared `vision_scores` (e.g. `remembered`), else computed per call."""
    scores = scores or vision_scores(vlm, split)

    def rule(idx, video_embeds):
        attention = scores(idx, video_embeds)  # (B, N)
        return visionzip_select(attention, video_embeds, token_budget(attention.shape[1], retention), dominant_share)

    return rule


# ---- DivPrune --------------------------------------------------------------------------------------
def divprune_select(video_tokens: torch.Tensor, k: int) -> torch.Tensor:
    """DivPrune (Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
    CVPR 2025): a max-min diversity subset of the video tokens under cosine distance, chosen greedily as the
    paper's algorithm does: first the token whose nearest other token is farthest, then repeatedly the token
    farthest from the chosen set (largest minimum distance). video_tokens (N, D) -> (N,) bool with k True."""
    x = F.normalize(video_tokens.float(), dim=-1)
    dist = 1 - x @ x.T  # (N, N) cosine distance
    n = dist.shape[0]
    keep = torch.zeros(n, dtype=torch.bool, device=x.device)
    first = dist.masked_fill(torch.eye(n, dtype=torch.bool, device=x.device), float("inf")).min(1).values.argmax()
    keep[first] = True
    nearest = dist[first].clone()  # (N,) distance of each token to the chosen set
    for _ in range(k - 1):
        nxt = nearest.masked_fill(keep, -1).argmax()
        keep[nxt] = True
        nearest = torch.minimum(nearest, dist[nxt])
    return keep


def divprune_rule(retention: float):
    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        return Selection(torch.stack([divprune_select(v[:n], k) for v in video_embeds]).cpu())

    return rule


# ---- temporal merging ------------------------------------------------------------------------------
def temporal_merge_select(video_tokens: torch.Tensor, grid, importance: torch.Tensor, k: int, threshold: float = 0.9):
    """Temporal merging in the spirit of FrameFusion (Fu et al., 2024) and PruneVid (Huang et al., 2024):
    a token that is nearly the same (cosine similarity ≥ `threshold`) as the token at the same position in the
    previous frame is merged into it (its chain keeps the earliest position and the mean embedding); the
    most similar pairs merge first, and merging stops at the budget. The chains left are then pruned to k by
    importance (the summed last-text-token attention of their members, as FrameFusion prunes by attention).
    video_tokens (N, D), importance (N,) -> (keep (N,) bool with k True, merged embeddings (N, D)), both on
    video_tokens' device. No step reads a tensor's values on the host, so it runs on a GPU without syncing and on
    the meta device."""
    t, h, w = grid
    hw = h * w
    n = t * hw
    device = video_tokens.device
    x = F.normalize(video_tokens.float(), dim=-1).view(t, hw, -1)
    sim = (x[1:] * x[:-1]).sum(-1).flatten()  # ((t-1)*hw,) token j+hw vs token j
    # merging the pair (j, j+hw) joins two chains of one position into one, so merging the pairs in similarity order
    # until k chains are left merges exactly the n-k most similar pairs, of those at the threshold or above
    first = sim.argsort(descending=True)[:n - k]  # (M,) the pairs merged if similar enough, most similar first
    merges = sim[first] >= threshold  # (M,) a prefix of True: `first` is sorted
    parent = torch.arange(n, device=device)  # each token's predecessor in its chain, itself at a chain's head
    parent[first + hw] = torch.where(merges, first, first + hw)
    # pointer jumping: after r rounds each token points 2^r links up its chain; a chain has at most t-1 links.
    # A fixed number of rounds: stopping when nothing changes would read the tensor on the host
    for _ in range(max(t - 2, 0).bit_length()):
        parent = parent[parent]  # (N,) each round doubles the links jumped; then every token points at its chain head
    is_head = parent == torch.arange(n, device=device)  # (N,)
    chain_importance = torch.zeros(n, device=device).index_add_(0, parent, importance.float().to(device))  # (N,) at the heads
    kept_heads = chain_importance.masked_fill(~is_head, float("-inf")).topk(k).indices  # (k,): k chains or more are left
    keep = torch.zeros(n, dtype=torch.bool, device=device).index_fill_(0, kept_heads, True)
    merged = torch.zeros_like(video_tokens).index_add_(0, parent, video_tokens)
    sizes = torch.zeros(n, dtype=torch.long, device=device).index_add_(0, parent, torch.ones_like(parent))  # (N,) at the heads
    return keep, merged / sizes.clamp(min=1)[:, None].to(video_tokens.dtype)


def temporal_merge_rule(vlm: VideoLLM, items: list[dict], retention: float, threshold: float = 0.9, layer: int = 1,
                        scores=None):
    """The temporal merge as a keep rule, pruning by FastV's attention (`scores`: a shared `last_token_scores`)."""
    scores = scores or last_token_scores(vlm, items, layer)

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        importance = scores(idx, video_embeds)  # (B, N)
        keeps, merged = [], video_embeds.clone()
        for row in range(len(idx)):
            keep, merged[row, :n] = temporal_merge_select(video_embeds[row, :n], vlm.grid, importance[row], k, threshold)
            keeps.append(keep)
        return Selection(torch.stack(keeps), video_embeds=merged)

    return rule


# ---- helpers shared by the 2025-26 methods (fastvid, flashvid, holitom, vidcom2) ---------------------
def cosine_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every row of a (M, D) with every row of b (K, D) (default: a) -> (M, K) float32."""
    a = F.normalize(a.float(), dim=-1)
    return a @ (a if b is None else F.normalize(b.float(), dim=-1)).T


def frame_distinctiveness(video_tokens: torch.Tensor, grid) -> torch.Tensor:
    """1 - cosine similarity of each token to its frame's mean token: (N, D) -> (N,) in [0, 2]. The embedding-only
    stand-in for a [CLS] attention where the vision attention cannot be read (no pixels, or not LLaVA-OneVision):
    tokens unlike the rest of their frame are the ones a [CLS] query singles out."""
    t, h, w = grid
    x = video_tokens.float().view(t, h * w, -1)
    return (1 - F.cosine_similarity(x, x.mean(1, keepdim=True), dim=-1)).flatten()  # (N,)


def split_budget(k: int, weights: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
    """k tokens split over parts in proportion to `weights` (largest remainders first), none above its cap;
    the counts sum to exactly k. weights, caps (P,) -> counts (P,) long."""
    caps = caps.long().cpu()
    weights = weights.double().clamp(min=0).cpu()
    if k > int(caps.sum()):
        raise KitInputError(f"budget {k}: more than the {int(caps.sum())} tokens to split it over")
    counts = torch.zeros_like(caps)
    left = k
    while left > 0:  # parts that hit their cap give their share back to the others
        room = counts < caps
        w = torch.where(room, weights, 0.0)
        w = w if w.sum() > 0 else room.double()
        share = w / w.sum() * left
        add = share.floor().long()
        add[(share - add).argsort(descending=True)[:left - int(add.sum())]] += 1
        add = torch.minimum(add, caps - counts)
        counts += add
        left -= int(add.sum())
    return counts


def merge_into_heads(video_tokens: torch.Tensor, head_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge each token into its group's head: head_of (N,) gives each token's head position (-1: dropped; a head
    is its own head). -> (keep (N,) bool: the heads; merged (N, D): at each head the mean of its group's tokens)."""
    n = video_tokens.shape[0]
    used = head_of >= 0
    heads = head_of[used]
    keep = torch.zeros(n, dtype=torch.bool, device="cpu")  # the keep-masks of the merging rules live on the CPU
    keep[heads.cpu()] = True
    sums = torch.zeros(n, video_tokens.shape[1], device=video_tokens.device).index_add_(
        0, heads.to(video_tokens.device), video_tokens[used.to(video_tokens.device)].float())  # (N, D)
    counts = torch.bincount(heads.cpu(), minlength=n).clamp(min=1).to(video_tokens.device)
    merged = video_tokens.clone()
    merged[keep.to(video_tokens.device)] = (sums / counts[:, None])[keep.to(video_tokens.device)].to(video_tokens.dtype)
    return keep, merged


def merging_rule(grid, retention: float, heads_fn, saliency=None):
    """A merging method (FastVID, FlashVID, HoliTom) as a keep rule: per item, heads_fn(tokens (N, D), saliency (N,),
    k) -> head_of (N,), each token's head (-1: dropped), and every group merges into its head (merge_into_heads).
    `saliency(idx, video_embeds) -> (B, N)`; None: frame_distinctiveness."""

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        scores = saliency(idx, video_embeds) if saliency is not None else None  # (B, N)
        keeps, merged = [], video_embeds.clone()
        for row, v in enumerate(video_embeds):
            s = scores[row] if scores is not None else frame_distinctiveness(v[:n], grid)  # (N,)
            keep, merged[row, :n] = merge_into_heads(v[:n], heads_fn(v[:n], s, k))
            keeps.append(keep)
        return Selection(torch.stack(keeps), video_embeds=merged)

    return rule


def density_peaks(tokens: torch.Tensor, k: int, neighbours: int = 5) -> torch.Tensor:
    """DPC-kNN (density-peaks clustering with k-nearest-neighbour density, as FastVID and HoliTom use it): the k
    tokens with the highest density x distance-to-a-denser-token, under cosine distance. (M, D) -> (k,) indices."""
    m = tokens.shape[0]
    if min(neighbours, m - 1) == 0:  # no other token to measure a density from
        return torch.arange(min(k, m), device=tokens.device)
    dist = 1 - cosine_matrix(tokens)  # (M, M)
    # the nearest others (self excluded); ties broken by index, so exactly one token is the densest
    return density_peak_scores(dist, neighbours, include_self=False, ties="index").topk(k).indices
