"""The kit's video-LLM interface: `VideoLLM`, the base class every backend adapter subclasses (LLaVA-OneVision in
models/llava_onevision.py, Qwen2.5-VL in models/qwen2_5_vl.py), and `Prompt`, the token ids around the video. The
policy, selection, rewards, baselines and evaluation see a model only through this interface."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cacovid_lib.data.schema import option_texts
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import PolicyInputs

# An assembled sequence: (input embeddings (L, D), the backend's position ids for them: (L,) or (3, L)).
Sequence = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Prompt:
    """Token ids of one prompt around the video (`prefix <video tokens> suffix`) and its option continuations."""

    prefix_ids: list[int]
    suffix_ids: list[int]
    option_ids: list[list[int]]


class VideoLLM:
    """A frozen video LLM seen through the operations CaCoVID needs: the protocol every backend gives.

    Video tokens: a video becomes N = t*h*w prunable tokens on the backend's grid (t, h, w), followed by one
    token that is never pruned (LLaVA-OneVision's newline, Qwen2.5-VL's <|vision_end|>): N+1 in all. Compression
    happens before the LLM (docs/method.md §1): kept video tokens stay in order and keep the position ids they have in
    the uncompressed sequence; dropped ones leave no trace.

    A backend sets, in its __init__: `model` (the transformers model), `tokenizer`, `num_frames`,
    `prompt_template` (str.format with {problem} and {options}, holding `video_mark` once) and `grid` (t, h, w);
    and as class attributes `video_mark` and `options_separator`. It gives the methods below that raise
    NotImplementedError; the rest are shared, and a backend may override them where it has a faster way.

    Who calls what:
    - video encoding (`encode_videos`): preprocess, encode_video
    - the policy (stages.policy_training, compare.cacovid): language_model, prompt, policy_inputs
    - rewards (models.rewards): prompt, option_logprobs, generate
    - evaluation, baselines, efficiency, audit (compare/, cli.benchmark_eval): prompt, assemble,
      forward_sequences, left_padded, option_logprobs, score_options, option_logprobs_pruned_inside,
      forward_pruned_inside, decode_greedy, generate
    - the small video LLM's training (embedded.small_vlm): continuation_logprobs (with gradients)
    """

    video_mark: str  # where the video tokens go in prompt_template
    options_separator: str  # what joins the option lines in prompt_template's {options}

    @property
    def device(self):
        return self.model.device

    @property
    def num_video_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def language_model(self):
        """The decoder the video tokens go through (what the policy copies its first layer from, docs/method.md §2)."""
        return self.model.model.language_model

    # ---- video -> embeddings (backend-specific) -------------------------------------------------------------
    def preprocess(self, frames):
        """uint8 frames (t, H, W, 3) -> the pixel tensor `encode_video` takes for one video, as the model's own
        processor makes it."""
        raise NotImplementedError

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """A batch of `preprocess` outputs stacked (B, ...) -> video-token embeddings (B, N+1, D)."""
        raise NotImplementedError

    # ---- prompt -> ids ------------------------------------------------------------------------------------
    def prompt(self, item: dict) -> Prompt:
        """A Video-R1 item -> its prompt's token ids around the video, and the token ids of each option's text."""
        text = self.prompt_template.format(problem=item["problem"], options=self.options_separator.join(item["options"]))
        if text.count(self.video_mark) != 1:
            raise KitInputError(f"prompt_template: must hold {self.video_mark} exactly once")
        before, after = text.split(self.video_mark)
        encode = lambda s: self.tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
        options = [encode(" " + o) for o in option_texts(item)]
        return Prompt(encode(before), encode(after), options)

    # ---- sequences ----------------------------------------------------------------------------------------
    def assemble(self, prompt: Prompt, video_embeds: torch.Tensor, keep: torch.Tensor, continuation=()) -> Sequence:
        """One sequence: prefix, kept video tokens, the never-pruned last video token, suffix, continuation.
        video_embeds (N+1, D), keep (N,) bool -> (embeds (L, D), position ids (L,) or (3, L)), the ids those
        tokens have in the sequence with every video token."""
        embed = self.model.get_input_embeddings()
        n, p = video_embeds.shape[0] - 1, len(prompt.prefix_ids)
        after = prompt.suffix_ids + list(continuation)
        kept = torch.nonzero(keep, as_tuple=True)[0].to(self.device)  # (k,) original indices of the kept video tokens
        ids = lambda xs: torch.tensor(xs, dtype=torch.long, device=self.device)  # noqa: E731
        embeds = torch.cat([embed(ids(prompt.prefix_ids)), video_embeds[kept], video_embeds[n:], embed(ids(after))])
        columns = torch.cat([torch.arange(p, device=self.device), p + kept,
                             torch.arange(p + n, p + n + 1 + len(after), device=self.device)])  # (L,)
        return embeds, self.sequence_positions(prompt, continuation, columns)

    # ---- position ids (backend-specific) ------------------------------------------------------------------
    def sequence_positions(self, prompt: Prompt, continuation, columns: torch.Tensor) -> torch.Tensor:
        """Position ids of the tokens at `columns` (L,) of the uncompressed sequence (prefix, N video tokens, the
        last video token, suffix, continuation) -> (L,) or (3, L)."""
        raise NotImplementedError

    def pad_positions(self, positions: list[torch.Tensor]) -> torch.Tensor:
        """Position ids of right-padded sequences, as the policy takes them: (L_b,) or (3, L_b) each ->
        (B, L) or (B, 3, L)."""
        raise NotImplementedError

    def lm_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """Batched position ids as `pad_positions` lays them out -> as the language model takes them
        (the same here; Qwen2.5-VL's rotary ids go (3, B, L))."""
        return positions

    def right_padded(self, sequences: list[Sequence]):
        """Assembled sequences, right-padded -> (embeds (B, L, D), the LM's position ids, attention mask (B, L)
        long, lengths (B,))."""
        lengths = torch.tensor([e.shape[0] for e, _ in sequences], device=self.device)
        embeds = torch.nn.utils.rnn.pad_sequence([e for e, _ in sequences], batch_first=True)  # (B, L, D)
        positions = self.lm_positions(self.pad_positions([q for _, q in sequences]))
        mask = torch.arange(embeds.shape[1], device=self.device)[None] < lengths[:, None]  # (B, L)
        return embeds, positions, mask.long(), lengths

    def left_padded(self, sequences: list[Sequence]):
        """Assembled sequences, left-padded so that every one ends in the last column -> (embeds (B, L, D), the LM's
        position ids, attention mask (B, L) long, pads: each row's number of padding columns)."""
        width = max(e.shape[0] for e, _ in sequences)
        pads = [width - e.shape[0] for e, _ in sequences]
        embeds = torch.stack([F.pad(e, (0, 0, pad, 0)) for (e, _), pad in zip(sequences, pads)])  # (B, L, D)
        positions = torch.stack([F.pad(q, (pad, 0)) for (_, q), pad in zip(sequences, pads)])  # (B, L) or (B, 3, L)
        mask = torch.stack([F.pad(q.new_ones(q.shape[-1]), (pad, 0)) for (_, q), pad in zip(sequences, pads)])  # (B, L)
        return embeds, self.lm_positions(positions), mask, pads

    # ---- forward and scoring ------------------------------------------------------------------------------
    def hidden_states(self, sequences: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded batch forward of assembled sequences -> (last hidden states (B, L_max, D), lengths (B,))."""
        embeds, positions, mask, lengths = self.right_padded(sequences)
        hidden = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                     use_cache=False).last_hidden_state
        return hidden, lengths

    def forward_sequences(self, sequences: list[Sequence]) -> torch.Tensor:
        """Right-padded batch forward of assembled sequences -> logits (B, L_max, V)."""
        return self.model.lm_head(self.hidden_states(sequences)[0])

    def last_logits(self, sequences: list[Sequence]) -> torch.Tensor:
        """Logits at each sequence's last token -> (B, V)."""
        logits = self.forward_sequences(sequences)  # (B, L_max, V)
        last = torch.tensor([e.shape[0] - 1 for e, _ in sequences], device=self.device)
        return logits[torch.arange(len(sequences)), last]

    def continuation_logprobs(self, prompts, video_embeds, keeps, continuations) -> torch.Tensor:
        """Sum of log p(continuation tokens) for each (prompt, video, keep-mask, continuation) -> (B,).
        Differentiable (the small video LLM trains on it)."""
        seqs = [self.assemble(p, v, k, c) for p, v, k, c in zip(prompts, video_embeds, keeps, continuations)]
        logp = torch.log_softmax(self.forward_sequences(seqs).float(), dim=-1)  # (B, L_max, V)
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
        One right-padded sequence per (prompt, option). video_embeds (B, N+1, D), keeps (B, N) bool."""
        num_opt = len(prompts[0].option_ids)
        rows = [(b, o) for b in range(len(prompts)) for o in range(num_opt)]
        out = self.continuation_logprobs([prompts[b] for b, _ in rows], [video_embeds[b] for b, _ in rows],
                                         [keeps[b] for b, _ in rows], [prompts[b].option_ids[o] for b, o in rows])
        return out.view(len(prompts), num_opt)

    @torch.no_grad()
    def score_options(self, item: dict, video_embeds: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
        """Option-text log-likelihood (lmms-eval's loglikelihood mode) for G keep-masks of one item:
        video_embeds (N+1, D), keeps (G, N) bool -> scores (G, num_options)."""
        return self.option_logprobs([self.prompt(item)] * keeps.shape[0], video_embeds[None].expand(keeps.shape[0], -1, -1), keeps)

    # ---- FastV's in-LLM pruning (LLaVA-OneVision only) ------------------------------------------------------
    def forward_pruned_inside(self, sequences: list[Sequence], video_starts: list[int], keeps: torch.Tensor,
                              after_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Assembled sequences with every video token go through decoder layers 0..`after_layer`; then the unkept
        video tokens are removed from the hidden states and the remaining layers run on the shorter sequences.
        keeps (M, N) bool, the same number kept per row -> (logits (M, L', V) right-padded, lengths (M,))."""
        raise NotImplementedError(f"{type(self).__name__}: in-LLM pruning (FastV) is implemented for LLaVA-OneVision only")

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

    # ---- the policy's inputs --------------------------------------------------------------------------------
    @torch.no_grad()
    def policy_inputs(self, prompts: list[Prompt], video_embeds: torch.Tensor) -> PolicyInputs:
        """What the policy sees (docs/method.md §2): the full prompts with every video token, right-padded.
        video_embeds (B, N+1, D) -> PolicyInputs with embeds (B, L, D), the backend's position ids (pad_positions)
        and video_mask True on the N video tokens."""
        n = video_embeds.shape[1] - 1
        seqs = [self.assemble(p, v, torch.ones(n, dtype=torch.bool)) for p, v in zip(prompts, video_embeds)]
        lengths = torch.tensor([e.shape[0] for e, _ in seqs])
        embeds = torch.nn.utils.rnn.pad_sequence([e for e, _ in seqs], batch_first=True)  # (B, L, D)
        positions = self.pad_positions([q for _, q in seqs])
        cols = torch.arange(embeds.shape[1])[None]  # (1, L)
        attention_mask = (cols < lengths[:, None]).long()
        starts = torch.tensor([len(p.prefix_ids) for p in prompts])[:, None]
        video_mask = (cols >= starts) & (cols < starts + n)  # (B, L)
        return PolicyInputs(embeds, positions.to(embeds.device), attention_mask.to(embeds.device),
                            video_mask.to(embeds.device), video_embeds[:, :n], self.grid)

    # ---- generation ---------------------------------------------------------------------------------------
    def stop_ids(self) -> set[int]:
        """Token ids that end an answer."""
        return {self.tokenizer.eos_token_id}

    @torch.no_grad()
    def generate(self, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor, max_new_tokens: int = 16) -> list[str]:
        """Greedy decoding for free-form answers, every (item, video, keep-mask) row in one batched forward per
        new token. video_embeds (B, N+1, D), keeps (B, N) -> B strings."""
        prompts = [self.prompt(item) for item in items]

        def next_logits(outs):
            return self.last_logits([self.assemble(p, v, k, o) for p, v, k, o in zip(prompts, video_embeds, keeps, outs)])

        return self.decode_greedy(next_logits, len(items), self.stop_ids(), max_new_tokens)

    def decode_greedy(self, next_logits, rows: int, stop: set[int], max_new_tokens: int) -> list[str]:
        """Greedy decoding of `rows` answers without a KV cache (the answers are short): next_logits(outs) -> (B, V),
        the logits of each row's next token after its prompt and its tokens so far, outs[b]. A row ends at a token
        in `stop` (not kept) or after `max_new_tokens`. -> the decoded answers."""
        outs: list[list[int]] = [[] for _ in range(rows)]
        done = [False] * rows
        for _ in range(max_new_tokens):
            nxt = next_logits(outs).argmax(-1).tolist()  # (B,)
            for b, tok in enumerate(nxt):
                if not done[b]:
                    done[b] = tok in stop
                    if not done[b]:
                        outs[b].append(tok)
            if all(done):
                break
        return [self.tokenizer.decode(o, skip_special_tokens=True).strip() for o in outs]


@torch.no_grad()
def encode_videos(vlm: VideoLLM, videos, batch_size: int = 64) -> torch.Tensor:
    """Video-token embeddings of every video (uint8 frames (t, H, W, 3) each), computed once by the frozen model:
    (V, N+1, D)."""
    out = []
    for start in tqdm(range(0, len(videos), batch_size), desc="encode videos", mininterval=5, leave=False):
        pixels = torch.stack([vlm.preprocess(f) for f in videos[start:start + batch_size]])
        out.append(vlm.encode_video(pixels))
    return torch.cat(out)
