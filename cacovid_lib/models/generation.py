"""Greedy decoding with a KV cache for the kit's video LLMs: each prompt runs through the language model once (the
prefill) and every new token then attends to the cached keys and values, instead of rerunning the whole prompt
per token as `VideoLLM.generate` and benchmark_eval.generate_pruned_inside do. Same answers as those two.

Why not transformers' `generate`: a kept video token keeps the position id it has in the uncompressed sequence
(docs/method.md §1), so a compressed prompt's position ids are not contiguous and `generate`'s own position ids
(cache length + step) would be wrong. The loop here carries each row's positions itself: the next token's id is
the row's largest id + 1 (for Qwen2.5-VL in all three rotary axes: text after the video has equal t/h/w ids, and
the model's get_rope_index starts them after the largest id so far).

Rows are left-padded (VideoLLM.left_padded) so every prompt ends in the last column and each step appends one
column to all rows; a row that has ended keeps being fed tokens that are thrown away, until every row has ended.
"""
from __future__ import annotations

import torch

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import MASK_SAFE_ATTENTION
from cacovid_lib.models.base import VideoLLM


# ---- the shared greedy loop ---------------------------------------------------------------------------------------
def greedy_ids(first_logits: torch.Tensor, step, stop: set[int], max_new_tokens: int, ended=None) -> list[list[int]]:
    """Greedy decoding from the prefill's logits (B, V): step(tokens (B,)) appends one token per row to the cache
    and returns the logits after it (B, V). A row ends at a token in `stop` (not kept) or after `max_new_tokens`,
    the loop when every row has ended (as VideoLLM.decode_greedy). ended(ids) -> bool, if given, also ends a row
    after a token (kept) once it holds for the row's ids so far. -> each row's new token ids."""
    rows = first_logits.shape[0]
    outs: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    logits = first_logits
    for t in range(max_new_tokens):
        tokens = logits.argmax(-1)  # (B,)
        for b, tok in enumerate(tokens.tolist()):
            if not done[b]:
                done[b] = tok in stop
                if not done[b]:
                    outs[b].append(tok)
                    done[b] = ended is not None and ended(outs[b])
        if all(done) or t == max_new_tokens - 1:  # no forward for a token nobody reads
            break
        logits = step(tokens)
    return outs


def _decode(vlm: VideoLLM, ids: list[list[int]]) -> list[str]:
    return [vlm.tokenizer.decode(o, skip_special_tokens=True).strip() for o in ids]


def _ends_with(vlm: VideoLLM, text: str):
    """ids -> whether their decoded text (trailing whitespace aside) ends with `text`, for a text that may span
    several tokens (a stop id cannot say that, and would drop the token besides). Only the last len(text) tokens are
    decoded, since each gives at least one character, so a long answer is not decoded again at every step; the
    whole row is decoded when tokens that give no text (special ones) leave that tail short."""
    n = len(text)

    def ended(ids: list[int]) -> bool:
        tail = vlm.tokenizer.decode(ids[-n:], skip_special_tokens=True)
        if len(tail) < n < len(ids):
            tail = vlm.tokenizer.decode(ids, skip_special_tokens=True)
        return tail.rstrip().endswith(text)
    return ended


def _check(items, video_embeds: torch.Tensor, keeps: torch.Tensor, max_new_tokens: int) -> None:
    if video_embeds.ndim != 3 or keeps.ndim != 2 or keeps.dtype != torch.bool:
        raise KitInputError(f"video_embeds, keeps: expected (B, N+1, D) and (B, N) bool, got {tuple(video_embeds.shape)} "
                            f"and {tuple(keeps.shape)} {keeps.dtype}")
    if not len(items) == video_embeds.shape[0] == keeps.shape[0] or keeps.shape[1] != video_embeds.shape[1] - 1:
        raise KitInputError(f"items, video_embeds, keeps: {len(items)} items, video_embeds {tuple(video_embeds.shape)} and "
                            f"keeps {tuple(keeps.shape)} do not match as B, (B, N+1, D), (B, N)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise KitInputError(f"max_new_tokens: {max_new_tokens!r} is not a whole number >= 0")


def _next_positions(positions: torch.Tensor) -> torch.Tensor:
    """The LM's position ids of a left-padded batch, (B, L) or Qwen2.5-VL's (3, B, L) -> each row's next token's
    id (B,): the row's largest id + 1 (padding columns hold 0)."""
    last = positions.amax(-1)  # (B,) or (3, B)
    return (last if positions.ndim == 2 else last.amax(0)) + 1


def _column(positions: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Next ids (B,) -> one column laid out as the LM takes `positions`: (B, 1), or (3, B, 1) equal in every axis."""
    return pos[:, None] if positions.ndim == 2 else pos[None, :, None].expand(positions.shape[0], -1, -1)


# ---- all layers on the compressed sequences --------------------------------------------------------------------------
@torch.no_grad()
def generate_cached_ids(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor,
                        max_new_tokens: int, stop_ids: set[int] | None = None,
                        stop_text: str | None = None) -> list[list[int]]:
    """The token ids `generate_cached` decodes: video_embeds (B, N+1, D), keeps (B, N) bool -> B lists of ids."""
    from transformers import DynamicCache

    _check(items, video_embeds, keeps, max_new_tokens)
    if stop_text is not None and (not isinstance(stop_text, str) or not stop_text.strip()):
        raise KitInputError(f"stop_text: {stop_text!r} is not a non-blank string")
    if max_new_tokens == 0:
        return [[] for _ in items]
    stop = vlm.stop_ids() if stop_ids is None else set(stop_ids)
    lm, embed, device = vlm.language_model, vlm.model.get_input_embeddings(), vlm.device
    seqs = [vlm.assemble(vlm.prompt(it), v, k.to(device)) for it, v, k in zip(items, video_embeds, keeps)]
    embeds, positions, mask, _ = vlm.left_padded(seqs)  # (B, L, D), (B, L) or (3, B, L), (B, L)
    cache = DynamicCache(config=lm.config)
    hidden = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True).last_hidden_state  # (B, L, D)
    state = {"mask": mask, "pos": _next_positions(positions)}  # (B, L+t) attention mask, (B,) next position ids

    def step(tokens):  # (B,)
        state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(len(tokens), 1)], dim=1)
        out = lm(inputs_embeds=embed(tokens.to(device))[:, None], attention_mask=state["mask"],
                 position_ids=_column(positions, state["pos"]), past_key_values=cache, use_cache=True).last_hidden_state
        state["pos"] = state["pos"] + 1
        return vlm.model.lm_head(out[:, -1])  # (B, V)

    first = vlm.model.lm_head(hidden[:, -1])
    if stop_text is None:
        return greedy_ids(first, step, stop, max_new_tokens)
    return greedy_ids(first, step, stop, max_new_tokens, ended=_ends_with(vlm, stop_text))


@torch.no_grad()
def generate_cached(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor,
                    max_new_tokens: int, stop_ids: set[int] | None = None, stop_text: str | None = None) -> list[str]:
    """Greedy decoding with a KV cache, the same answers as `vlm.generate(items, video_embeds, keeps,
    max_new_tokens)`: video_embeds (B, N+1, D), keeps (B, N) bool -> B strings. stop_ids: the tokens that end an
    answer, `vlm.stop_ids()` if None. stop_text: a row also ends, its tokens kept, once its text ends with this
    (e.g. "</answer>", which may be several tokens); the answer is then a prefix of the unstopped one."""
    return _decode(vlm, generate_cached_ids(vlm, items, video_embeds, keeps, max_new_tokens, stop_ids, stop_text))


# ---- FastV's in-LLM pruning ---------------------------------------------------------------------------------------
def _additive(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """Allowed (B, Q, K) bool -> the additive attention mask the decoder layers take (B, 1, Q, K)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def _prefill_mask(mask: torch.Tensor, dtype) -> torch.Tensor:
    """Causal mask of a left-padded batch, padding keys masked: mask (B, L) -> (B, 1, L, L). A padding query may see
    itself, so that no row of the softmax is fully masked (its output is never read)."""
    cols = torch.arange(mask.shape[1], device=mask.device)
    causal = cols[None, :] <= cols[:, None]  # (L, L) query, key
    allowed = causal[None] & (mask.bool()[:, None, :] | (cols[None, :] == cols[:, None])[None])  # (B, L, L)
    return _additive(allowed, dtype)


def _left_pack(keep_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns each row keeps (B, L) bool -> (their indices left-padded to the longest row (B, L'), attention mask
    (B, L') long). Padding columns point at column 0 and are masked."""
    counts = keep_cols.sum(1).tolist()
    width = max(counts)
    index = torch.zeros(len(counts), width, dtype=torch.long, device=keep_cols.device)
    mask = torch.zeros(len(counts), width, dtype=torch.long, device=keep_cols.device)
    for b, (row, c) in enumerate(zip(keep_cols, counts)):
        index[b, width - c:] = torch.nonzero(row, as_tuple=True)[0]
        mask[b, width - c:] = 1
    return index, mask


@torch.no_grad()
def generate_pruned_inside_cached_ids(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor,
                                      after_layer: int, max_new_tokens: int,
                                      stop_ids: set[int] | None = None) -> list[list[int]]:
    """The token ids `generate_pruned_inside_cached` decodes: video_embeds (B, N+1, D), keeps (B, N) bool -> B lists
    of ids."""
    from transformers import DynamicCache

    from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM

    if not isinstance(vlm, LlavaOneVisionVideoLLM):
        raise KitInputError(f"{type(vlm).__name__}: in-LLM pruning (FastV) is implemented for LLaVA-OneVision only")
    _check(items, video_embeds, keeps, max_new_tokens)
    lm, embed, device = vlm.language_model, vlm.model.get_input_embeddings(), vlm.device
    # the layers run one by one on 4-D additive masks, which flash_attention_2 would misread as a 2-D padding mask
    implementation = getattr(lm.config, "_attn_implementation", None) or "eager"
    if implementation not in MASK_SAFE_ATTENTION:
        raise KitInputError(f"attn_implementation: {implementation!r} cannot run in-LLM pruning's 4-D attention masks; "
                            f"valid: {', '.join(MASK_SAFE_ATTENTION)} (load the video LLM with one of them)")
    if isinstance(after_layer, bool) or not isinstance(after_layer, int) or not 0 <= after_layer < len(lm.layers):
        raise KitInputError(f"after_layer: {after_layer!r} is not a layer index in [0, {len(lm.layers) - 1}]")
    if max_new_tokens == 0:
        return [[] for _ in items]
    stop = vlm.stop_ids() if stop_ids is None else set(stop_ids)
    prompts = [vlm.prompt(it) for it in items]
    n = video_embeds.shape[1] - 1
    every = torch.ones(n, dtype=torch.bool, device=device)
    embeds, positions, mask, pads = vlm.left_padded([vlm.assemble(p, v, every) for p, v in zip(prompts, video_embeds)])
    # what layers after `after_layer` see: each row's prompt without its unkept video tokens, left-padded again
    # (rows may keep different numbers of tokens)
    keep_cols = mask.bool().clone()  # (B, L)
    for b, (p, k, pad) in enumerate(zip(prompts, keeps, pads)):
        start = pad + len(p.prefix_ids)
        keep_cols[b, start:start + n] = k.to(device)
    index, late_mask = _left_pack(keep_cols)  # (B, L'), (B, L')
    late_positions = positions.gather(1, index)  # (B, L') the kept tokens' original position ids

    # prefill, layer by layer as VideoLLM.forward_pruned_inside: layers 0..after_layer cache every token, the later
    # layers only the kept ones (DynamicCache keeps one length per layer)
    cache = DynamicCache(config=lm.config)
    hidden = embeds  # (B, L, D)
    attn, pos_ids, rotary = _prefill_mask(mask, hidden.dtype), positions, lm.rotary_emb(hidden, positions)
    for i, layer in enumerate(lm.layers):
        hidden = layer(hidden, attention_mask=attn, position_ids=pos_ids, past_key_values=cache, use_cache=True,
                       position_embeddings=rotary)
        if i == after_layer:
            hidden = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))  # (B, L', D)
            attn, pos_ids = _prefill_mask(late_mask, hidden.dtype), late_positions
            rotary = lm.rotary_emb(hidden, pos_ids)
    state = {"masks": [mask, late_mask], "pos": _next_positions(positions)}  # each layer group's (B, K) mask; (B,)

    def step(tokens):  # (B,)
        state["masks"] = [torch.cat([m, m.new_ones(len(tokens), 1)], dim=1) for m in state["masks"]]
        h = embed(tokens.to(device))[:, None]  # (B, 1, D)
        # one query column: no causal part, only each group's padding (allowed as (B, 1, K))
        early, late = (_additive(m.bool()[:, None], h.dtype) for m in state["masks"])
        col = state["pos"][:, None]  # (B, 1) the new token's position id, the same in both groups
        rot = lm.rotary_emb(h, col)
        for i, layer in enumerate(lm.layers):
            h = layer(h, attention_mask=early if i <= after_layer else late, position_ids=col, past_key_values=cache,
                      use_cache=True, position_embeddings=rot)
        state["pos"] = state["pos"] + 1
        return vlm.model.lm_head(lm.norm(h[:, -1]))  # (B, V)

    return greedy_ids(vlm.model.lm_head(lm.norm(hidden[:, -1])), step, stop, max_new_tokens)


@torch.no_grad()
def generate_pruned_inside_cached(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor,
                                  after_layer: int, max_new_tokens: int, stop_ids: set[int] | None = None) -> list[str]:
    """Greedy decoding with FastV's in-LLM pruning and a KV cache, the same answers as
    benchmark_eval.generate_pruned_inside: every token goes through decoder layers 0..`after_layer`, the unkept
    video tokens are then dropped from the hidden states and from what the later layers attend to (new tokens
    included). LLaVA-OneVision only. video_embeds (B, N+1, D), keeps (B, N) bool (rows may keep different numbers)
    -> B strings. stop_ids: the tokens that end an answer, `vlm.stop_ids()` if None."""
    return _decode(vlm, generate_pruned_inside_cached_ids(vlm, items, video_embeds, keeps, after_layer, max_new_tokens,
                                                          stop_ids))
