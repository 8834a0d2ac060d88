"""LLaVA-OneVision behind the kit's `VideoLLM` interface (models/base.py): its video tokens, position ids and the
forwards that are its own (option scoring from one cached prompt, FastV's in-LLM pruning).

Video tokens are the 2x2-pooled SigLIP patches of each frame, grid (t, h, w) = (frames, side, side), then
LLaVA-OneVision's newline token as token N, never pruned. Position ids are 1-D: a kept video token keeps the id
it has in the sequence with every video token (docs/method.md §1).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cacovid_lib.models.base import Prompt, Sequence, VideoLLM
from cacovid_lib.models.preprocess import llava_onevision_pixels
from cacovid_lib.models.pretrained import load_pretrained

DEFAULT_PROMPT = "<|im_start|> user <video> {problem} options : {options} <|im_end|> <|im_start|> assistant answer :"


class LlavaOneVisionVideoLLM(VideoLLM):
    """A frozen LLaVA-OneVision model seen through the operations CaCoVID needs."""

    video_mark = "<video>"
    options_separator = " "

    def __init__(self, model, tokenizer, num_frames: int, prompt_template: str = DEFAULT_PROMPT):
        self.model = model
        self.tokenizer = tokenizer
        self.num_frames = num_frames
        self.prompt_template = prompt_template
        vision = model.config.vision_config
        side = math.ceil(vision.image_size / vision.patch_size / 2)  # 2x2 bilinear pooling of the patch grid
        self.grid = (num_frames, side, side)  # (t, h, w)
        self.image_size = vision.image_size

    @classmethod
    def from_pretrained(cls, path, num_frames: int, device="cpu", prompt_template: str = DEFAULT_PROMPT, **kw):
        from transformers import LlavaOnevisionForConditionalGeneration

        model, tokenizer = load_pretrained(LlavaOnevisionForConditionalGeneration, path, device=device, **kw)
        return cls(model, tokenizer, num_frames, prompt_template)

    # ---- video -> embeddings -------------------------------------------------------------------
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (t, H, W, 3) frames -> SigLIP pixel values (t, 3, S, S), exactly as the transformers processor
        (PIL backend) makes them: bicubic resize, rescale, normalise to [-1, 1]."""
        return llava_onevision_pixels(frames, self.image_size)

    def encode_video(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """(B, t, 3, S, S) -> video-token embeddings (B, t*h*w + 1, D); the last one is the newline token."""
        out = self.model.model.get_video_features(pixel_values_videos.to(self.device, self.model.dtype))
        return out.pooler_output

    # ---- position ids ----------------------------------------------------------------------------
    def sequence_positions(self, prompt: Prompt, continuation, columns: torch.Tensor) -> torch.Tensor:
        """1-D position ids: a token's column in the uncompressed sequence -> (L,)."""
        return columns

    def pad_positions(self, positions: list[torch.Tensor]) -> torch.Tensor:
        """Position ids of right-padded sequences: (L_b,) each -> (B, L)."""
        return torch.nn.utils.rnn.pad_sequence(positions, batch_first=True)

    # ---- forwards of its own ---------------------------------------------------------------------
    @torch.no_grad()
    def option_logprobs(self, prompts: list[Prompt], video_embeds: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
        """Sum of log p(option text) for every option of each (prompt, video, keep-mask) row -> (B, num_options).
        Same numbers as `continuation_logprobs` over every option, at about a quarter of the cost: each prompt
        runs once (left-padded, so all prompts end in the same column) and the options continue from its
        cached keys and values. video_embeds (B, N+1, D), keeps (B, N) bool."""
        from transformers import DynamicCache

        lm, embed = self.language_model, self.model.get_input_embeddings()
        embeds, positions, mask, _ = self.left_padded([self.assemble(p, v, k) for p, v, k in zip(prompts, video_embeds, keeps)])
        cache = DynamicCache(config=lm.config)
        hidden = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                    use_cache=True).last_hidden_state
        first = torch.log_softmax(self.model.lm_head(hidden[:, -1]).float(), dim=-1)  # (B, V): each option's first token
        num_opt = len(prompts[0].option_ids)
        cache.batch_repeat_interleave(num_opt)  # row b -> rows b*O .. b*O+O-1
        conts = [p.option_ids[o] for p in prompts for o in range(num_opt)]
        c = max(len(x) for x in conts)
        ids = torch.tensor([x + [0] * (c - len(x)) for x in conts], device=self.device)  # (B*O, C)
        valid = torch.tensor([[j < len(x) for j in range(c)] for x in conts], device=self.device)
        start = positions[:, -1].repeat_interleave(num_opt)[:, None] + 1
        hidden = lm(inputs_embeds=embed(ids), attention_mask=torch.cat([mask.repeat_interleave(num_opt, 0), valid.long()], 1),
                    position_ids=start + torch.arange(c, device=self.device), past_key_values=cache).last_hidden_state
        logp = torch.cat([first.repeat_interleave(num_opt, 0)[:, None],
                          torch.log_softmax(self.model.lm_head(hidden[:, :-1]).float(), dim=-1)], dim=1)  # (B*O, C, V)
        token_logp = logp.gather(-1, ids[..., None]).squeeze(-1) * valid  # (B*O, C)
        return token_logp.sum(1).view(len(prompts), num_opt)

    @torch.no_grad()
    def forward_pruned_inside(self, sequences: list[Sequence], video_starts: list[int],
                              keeps: torch.Tensor, after_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """FastV's in-LLM pruning (see VideoLLM.forward_pruned_inside): assembled sequences with every video token go through decoder layers
        0..`after_layer`; then the unkept video tokens are removed from the hidden states and the remaining
        layers run on the shorter sequences. Layers are run one by one so the sequence can shrink between them.
        keeps (M, N) bool, the same number kept per row -> (logits (M, L', V) right-padded, lengths (M,))."""
        lm = self.language_model
        n = keeps.shape[1]
        hidden, positions, _, lengths = self.right_padded(sequences)  # (M, L, D), (M, L), _, (M,)

        def additive_mask(length):  # causal over the sequence order, padding masked: (M, 1, L, L)
            cols = torch.arange(length, device=self.device)
            allowed = (cols[None, :] <= cols[:, None])[None] & (cols[None, None, :] < lengths[:, None, None])
            return torch.zeros(allowed.shape, dtype=hidden.dtype, device=self.device).masked_fill(
                ~allowed, torch.finfo(hidden.dtype).min)[:, None]

        mask, rotary = additive_mask(hidden.shape[1]), lm.rotary_emb(hidden, positions)
        for i, layer in enumerate(lm.layers):
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
            if i == after_layer:  # every row loses the same number of tokens, so padding stays at the end
                keep_cols = torch.ones(hidden.shape[:2], dtype=torch.bool, device=self.device)  # (M, L)
                for row, (s, k) in enumerate(zip(video_starts, keeps)):
                    keep_cols[row, s:s + n] = k.to(self.device)
                index = torch.stack([torch.nonzero(r, as_tuple=True)[0] for r in keep_cols])  # (M, L')
                hidden = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))  # (M, L', D)
                positions = positions.gather(1, index)  # (M, L') the kept tokens' original position ids
                lengths = lengths - (n - keeps.sum(1).to(self.device))
                mask, rotary = additive_mask(hidden.shape[1]), lm.rotary_emb(hidden, positions)
        return self.model.lm_head(lm.norm(hidden)), lengths
