"""The model adapter: video -> video-token embeddings, prompt -> input embeddings, compressed forward, answer scoring.

Compression happens before the LLM (METHOD §1): kept video tokens stay in order and keep their
original position ids; dropped tokens are removed from the sequence; the trailing newline token of
LLaVA-OneVision is never pruned. Everything here takes plain tensors so that the policy, the
baselines and the evaluation all share one code path.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cacovid_lib.models.base import Prompt, VideoLLM
from cacovid_lib.models.preprocess import llava_onevision_pixels
from cacovid_lib.models.pretrained import load_pretrained

DEFAULT_PROMPT = "<|im_start|> user <video> {problem} options : {options} <|im_end|> <|im_start|> assistant answer :"


class LlavaOneVisionVideoLLM(VideoLLM):
    """A frozen LLaVA-OneVision model seen through the operations CaCoVID needs."""

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

    # ---- prompt -> ids -------------------------------------------------------------------------
    def prompt(self, item: dict) -> Prompt:
        from cacovid_lib.data.schema import option_texts

        text = self.prompt_template.format(problem=item["problem"], options=" ".join(item["options"]))
        before, after = text.split("<video>")
        encode = lambda s: self.tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
        options = [encode(" " + o) for o in option_texts(item)]
        return Prompt(encode(before), encode(after), options)

    # ---- compressed forward --------------------------------------------------------------------
    def assemble(self, prompt: Prompt, video_embeds: torch.Tensor, keep: torch.Tensor, continuation=()):
        """One sequence: prefix, kept video tokens, newline, suffix, continuation -> (embeds (L, D), position ids (L,))."""
        embed = self.model.get_input_embeddings()
        n = video_embeds.shape[0] - 1
        p = len(prompt.prefix_ids)
        after = prompt.suffix_ids + list(continuation)
        kept = torch.nonzero(keep, as_tuple=True)[0]  # (k,) original indices of the kept video tokens
        ids = lambda xs: torch.tensor(xs, dtype=torch.long, device=self.device)  # noqa: E731
        embeds = torch.cat([embed(ids(prompt.prefix_ids)), video_embeds[kept], video_embeds[n:], embed(ids(after))])
        positions = torch.cat([
            torch.arange(p, device=self.device),
            p + kept.to(self.device),
            torch.arange(p + n, p + n + 1 + len(after), device=self.device),
        ])
        return embeds, positions

    def forward_sequences(self, sequences: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Right-padded batch forward of assembled sequences -> logits (B, L_max, V)."""
        lengths = [e.shape[0] for e, _ in sequences]
        embeds = torch.nn.utils.rnn.pad_sequence([e for e, _ in sequences], batch_first=True)
        positions = torch.nn.utils.rnn.pad_sequence([p for _, p in sequences], batch_first=True)
        mask = (torch.arange(max(lengths), device=self.device)[None] < torch.tensor(lengths, device=self.device)[:, None])
        hidden = self.model.model.language_model(
            inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions
        ).last_hidden_state
        return self.model.lm_head(hidden)

    def pad_positions(self, positions: list[torch.Tensor]) -> torch.Tensor:
        """Position ids of right-padded sequences: (L_b,) each -> (B, L)."""
        return torch.nn.utils.rnn.pad_sequence(positions, batch_first=True)

    def continuation_logprobs(self, prompts, video_embeds, keeps, continuations) -> torch.Tensor:
        """Sum of log p(continuation tokens) for each (prompt, video, keep-mask, continuation) -> (B,)."""
        seqs = [self.assemble(p, v, k, c) for p, v, k, c in zip(prompts, video_embeds, keeps, continuations)]
        logits = self.forward_sequences(seqs).float()
        logp = torch.log_softmax(logits, dim=-1)
        out = []
        for b, ((e, _), cont) in enumerate(zip(seqs, continuations)):
            end = e.shape[0]
            targets = torch.tensor(cont, device=self.device)
            rows = torch.arange(end - len(cont) - 1, end - 1, device=self.device)  # positions predicting them
            out.append(logp[b, rows, targets].sum())
        return torch.stack(out)

    @torch.no_grad()
    def option_logprobs(self, prompts: list[Prompt], video_embeds: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
        """Sum of log p(option text) for every option of each (prompt, video, keep-mask) row -> (B, num_options).
        Same numbers as `continuation_logprobs` over every option, at about a quarter of the cost: each prompt
        runs once (left-padded, so all prompts end in the same column) and the options continue from its
        cached keys and values. video_embeds (B, N+1, D), keeps (B, N) bool."""
        from transformers import DynamicCache

        lm, embed = self.model.model.language_model, self.model.get_input_embeddings()
        seqs = [self.assemble(p, v, k) for p, v, k in zip(prompts, video_embeds, keeps)]
        width = max(e.shape[0] for e, _ in seqs)
        embeds = torch.stack([F.pad(e, (0, 0, width - e.shape[0], 0)) for e, _ in seqs])  # (B, L, D), left-padded
        positions = torch.stack([F.pad(q, (width - q.shape[0], 0)) for _, q in seqs])  # (B, L)
        mask = torch.stack([F.pad(torch.ones_like(q), (width - q.shape[0], 0)) for _, q in seqs])  # (B, L)
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
    def forward_pruned_inside(self, sequences: list[tuple[torch.Tensor, torch.Tensor]], video_starts: list[int],
                              keeps: torch.Tensor, after_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """FastV's in-LLM pruning: assembled sequences with every video token go through decoder layers
        0..`after_layer`; then the unkept video tokens are removed from the hidden states and the remaining
        layers run on the shorter sequences. Layers are run one by one so the sequence can shrink between them.
        keeps (M, N) bool, the same number kept per row -> (logits (M, L', V) right-padded, lengths (M,))."""
        lm = self.model.model.language_model
        n = keeps.shape[1]
        lengths = torch.tensor([e.shape[0] for e, _ in sequences], device=self.device)  # (M,)
        hidden = torch.nn.utils.rnn.pad_sequence([e for e, _ in sequences], batch_first=True)  # (M, L, D)
        positions = torch.nn.utils.rnn.pad_sequence([q for _, q in sequences], batch_first=True)  # (M, L)

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

    @torch.no_grad()
    def option_logprobs_pruned_inside(self, prompts: list[Prompt], video_embeds: torch.Tensor, keeps: torch.Tensor,
                                      after_layer: int) -> torch.Tensor:
        """Like `option_logprobs`, with the unkept video tokens removed inside the LLM after `after_layer`
        (`forward_pruned_inside`); one sequence per (prompt, option). video_embeds (B, N+1, D), keeps (B, N)
        -> (B, num_options)."""
        n, num_opt = video_embeds.shape[1] - 1, len(prompts[0].option_ids)
        full = torch.ones(n, dtype=torch.bool)
        seqs = [self.assemble(p, v, full, p.option_ids[o]) for p, v in zip(prompts, video_embeds) for o in range(num_opt)]
        starts = [len(p.prefix_ids) for p in prompts for _ in range(num_opt)]
        logits, lengths = self.forward_pruned_inside(seqs, starts, keeps.repeat_interleave(num_opt, 0), after_layer)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*O, L', V)
        out = []
        for row, end in enumerate(lengths.tolist()):
            cont = prompts[row // num_opt].option_ids[row % num_opt]
            rows = torch.arange(end - len(cont) - 1, end - 1, device=self.device)  # positions predicting the option
            out.append(logp[row, rows, torch.tensor(cont, device=self.device)].sum())
        return torch.stack(out).view(len(prompts), num_opt)

    @torch.no_grad()
    def score_options(self, item: dict, video_embeds: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
        """Option-text log-likelihood (lmms-eval's loglikelihood mode) for G keep-masks of one item, in one
        batched forward: video_embeds (N+1, D), keeps (G, N) bool -> scores (G, num_options)."""
        return self.option_logprobs([self.prompt(item)] * keeps.shape[0], video_embeds[None].expand(keeps.shape[0], -1, -1), keeps)

    @torch.no_grad()
    def score_letters(self, item: dict, video_embeds: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
        """Option-letter logits at the answer position (lmms-eval's generate-then-parse, first token) -> (G, num_options)."""
        prompt = self.prompt(item)
        letters = [self.tokenizer(o.split(".")[0], add_special_tokens=False).input_ids[0] for o in item["options"]]
        seqs = [self.assemble(prompt, video_embeds, k) for k in keeps]
        logits = self.forward_sequences(seqs)
        last = torch.tensor([e.shape[0] - 1 for e, _ in seqs], device=self.device)
        return logits[torch.arange(len(seqs)), last][:, letters]

    @torch.no_grad()
    def generate(self, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor, max_new_tokens: int = 16) -> list[str]:
        """Greedy decoding for free-form answers, every (item, video, keep-mask) row in one batched forward per
        new token. video_embeds (B, N+1, D), keeps (B, N) -> B strings."""
        prompts = [self.prompt(item) for item in items]

        def next_logits(outs):
            seqs = [self.assemble(p, v, k, o) for p, v, k, o in zip(prompts, video_embeds, keeps, outs)]
            logits = self.forward_sequences(seqs)  # (B, L_max, V)
            last = torch.tensor([e.shape[0] - 1 for e, _ in seqs], device=self.device)
            return logits[torch.arange(len(seqs)), last]  # (B, V)

        return self.decode_greedy(next_logits, len(items), {self.tokenizer.eos_token_id}, max_new_tokens)
