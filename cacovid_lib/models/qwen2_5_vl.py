"""Qwen2.5-VL behind the kit's `VideoLLM` interface (models/base.py), so that the policy, selection, rewards and
evaluation code run on it unchanged.

Conventions, and where Qwen2.5-VL differs from LLaVA-OneVision:
- Video tokens are the vision patch merger's outputs, in time-then-space order: grid (t, h, w) =
  (grid_t, grid_h / merge, grid_w / merge), one token per `temporal_patch_size` (2) frames and 2x2 patches.
- Every video is resized to one fixed `frame_size`, so all videos share one grid (the kit stacks video tokens).
- Qwen2.5-VL has no newline token. The kit's `N+1` convention is kept by appending the input embedding of
  `<|vision_end|>` (the token that closes every video in Qwen's chat template) as the last, never-pruned
  "video token": a prompt's prefix ends with `<|vision_start|>` and its suffix starts after `<|vision_end|>`.
- Position ids are Qwen2.5-VL's multimodal rotary ids (3, L) (temporal, height, width): computed by the model's
  own `get_rope_index` on the full sequence with every video token, then gathered for the kept tokens, so each
  kept token carries exactly the ids it has in the uncompressed sequence (docs/method.md §1).
- Only the rows that are needed go through the LM head (the vocabulary has ~151k entries).
- FastV's in-LLM pruning (`forward_pruned_inside`) is not implemented for it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.models.base import Prompt, Sequence, VideoLLM
from cacovid_lib.models.preprocess import check_frames, qwen2_5_vl_pixels

# Qwen2.5-VL's chat template rendered for one video and a text question (default system prompt), one option
# per line; the answer is scored as the option text after "Answer:", as llava_onevision.DEFAULT_PROMPT does for
# LLaVA-OneVision.
QWEN_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|vision_end|>{problem}\nOptions:\n{options}<|im_end|>\n"
    "<|im_start|>assistant\nAnswer:"
)
DEFAULT_FRAME_SIZE = (392, 392)  # 28x28 patches -> 14x14 video tokens per 2 frames, LLaVA-OneVision's grid


class Qwen25VLVideoLLM(VideoLLM):
    """A frozen Qwen2.5-VL model seen through the operations CaCoVID needs."""

    video_mark = "<|video_pad|><|vision_end|>"  # where the video tokens (and the trailing <|vision_end|>) go
    options_separator = "\n"

    def __init__(self, model, tokenizer, num_frames: int, frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
                 prompt_template: str = QWEN_PROMPT, second_per_grid_t: float | None = None):
        """second_per_grid_t: seconds covered by one temporal patch, which spaces the temporal rotary ids (the
        processor passes temporal_patch_size / sampled fps); None = the model's default of 1 second."""
        self.model = model
        self.tokenizer = tokenizer
        self.num_frames = num_frames
        self.prompt_template = prompt_template
        self.second_per_grid_t = second_per_grid_t
        vision = model.config.vision_config
        self.patch_size, self.merge, self.temporal_patch = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        factor = self.patch_size * self.merge
        height, width = frame_size
        if height < factor or width < factor or height % factor or width % factor:
            raise KitInputError(f"frame_size: {tuple(frame_size)} must be positive multiples of {factor} "
                                "(patch_size x spatial_merge_size)")
        self.frame_size = (height, width)
        grid_t = math.ceil(num_frames / self.temporal_patch)  # the processor repeats the last frame of an odd count
        self.video_grid_thw = torch.tensor([[grid_t, height // self.patch_size, width // self.patch_size]])  # patch units
        self.grid = (grid_t, height // factor, width // factor)  # (t, h, w) of the merged video tokens
        self.video_token_id = model.config.video_token_id
        self.vision_end_id = model.config.vision_end_token_id
        self._positions: dict[tuple[int, int], torch.Tensor] = {}  # (prefix length, text length after the video) -> (3, L)

    # ---- video -> embeddings -------------------------------------------------------------------
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (t, H, W, 3) -> patches (grid_t*grid_h*grid_w, 3*T*p*p), as the Qwen2-VL processor (PIL backend)
        makes them for frames of `frame_size`; other sizes are resized straight to `frame_size` (aspect ratio not
        kept), where the processor would pick its own size and so a different grid."""
        if check_frames(frames).shape[0] != self.num_frames:
            raise KitInputError(f"frames: expected {self.num_frames} frames, got {frames.shape[0]}")
        patches, _ = qwen2_5_vl_pixels(frames, self.frame_size, self.patch_size, self.temporal_patch, self.merge)
        return patches

    def encode_video(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """(B, P, 3*T*p*p) patches -> video-token embeddings (B, N+1, D); the last one is <|vision_end|>'s embedding."""
        b = pixel_values_videos.shape[0]
        pixels = pixel_values_videos.flatten(0, 1).to(self.device, self.model.dtype)  # (B*P, F): videos one after another
        out = self.model.model.get_video_features(pixels, self.video_grid_thw.expand(b, -1).to(self.device), return_dict=True)
        video = torch.stack(out.pooler_output)  # (B, N, D), one split per video
        end = self.model.get_input_embeddings()(torch.tensor([self.vision_end_id], device=self.device))  # (1, D)
        return torch.cat([video, end.to(video.dtype)[None].expand(b, -1, -1)], dim=1)

    # ---- position ids ----------------------------------------------------------------------------
    def full_positions(self, prompt: Prompt, continuation=()) -> torch.Tensor:
        """Rotary ids (3, L) of the uncompressed sequence prefix, N video tokens, <|vision_end|>, suffix,
        continuation, from the model's own get_rope_index (the processor's token types: video = 2, text = 0).
        They depend only on the token types, i.e. on the two text lengths, so they are computed once per pair
        (get_rope_index is a Python loop over the sequence, and scoring calls this once per option)."""
        key = (len(prompt.prefix_ids), len(prompt.suffix_ids) + len(continuation))
        if key not in self._positions:
            self._positions[key] = self._rope_index(prompt, continuation)
        return self._positions[key].to(self.device)

    def _rope_index(self, prompt: Prompt, continuation=()) -> torch.Tensor:
        n, p = self.num_video_tokens, len(prompt.prefix_ids)
        ids = prompt.prefix_ids + [self.video_token_id] * n + [self.vision_end_id] + prompt.suffix_ids + list(continuation)
        input_ids = torch.tensor([ids], device=self.device)  # (1, L)
        types = torch.zeros_like(input_ids, dtype=torch.int)
        types[0, p:p + n] = 2
        seconds = None if self.second_per_grid_t is None else torch.tensor([self.second_per_grid_t])
        positions, _ = self.model.model.get_rope_index(input_ids, mm_token_type_ids=types, video_grid_thw=self.video_grid_thw,
                                                       second_per_grid_ts=seconds)
        return positions[:, 0]  # (3, L)

    def sequence_positions(self, prompt: Prompt, continuation, columns: torch.Tensor) -> torch.Tensor:
        """Multimodal rotary ids of the tokens at `columns` (L,) of the uncompressed sequence -> (3, L)."""
        return self.full_positions(prompt, continuation)[:, columns]

    def pad_positions(self, positions: list[torch.Tensor]) -> torch.Tensor:
        """Multimodal rotary ids of right-padded sequences: (3, L_b) each -> (B, 3, L)."""
        return torch.nn.utils.rnn.pad_sequence([q.T for q in positions], batch_first=True).transpose(1, 2)

    def lm_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """(B, 3, L) -> (3, B, L), the layout Qwen2.5-VL's language model takes."""
        return positions.transpose(0, 1)

    # ---- forwards: only the rows needed go through the LM head -----------------------------------
    def last_logits(self, sequences: list[Sequence]) -> torch.Tensor:
        """Logits at each sequence's last token -> (B, V), without the LM head over every position."""
        hidden, lengths = self.hidden_states(sequences)
        return self.model.lm_head(hidden[torch.arange(len(sequences), device=self.device), lengths - 1])

    def continuation_logprobs(self, prompts, video_embeds, keeps, continuations) -> torch.Tensor:
        """Sum of log p(continuation tokens) for each (prompt, video, keep-mask, continuation) -> (B,)."""
        seqs = [self.assemble(p, v, k, c) for p, v, k, c in zip(prompts, video_embeds, keeps, continuations)]
        hidden, lengths = self.hidden_states(seqs)
        rows = [torch.arange(end - len(c) - 1, end - 1, device=self.device) for end, c in zip(lengths.tolist(), continuations)]
        picked = torch.cat([hidden[b, r] for b, r in enumerate(rows)])  # (sum C, D): the positions predicting them
        logp = torch.log_softmax(self.model.lm_head(picked).float(), dim=-1)  # (sum C, V)
        targets = torch.tensor([tok for c in continuations for tok in c], device=self.device)
        token_logp = logp[torch.arange(len(targets), device=self.device), targets]  # (sum C,)
        return torch.stack([part.sum() for part in token_logp.split([len(c) for c in continuations])])

    def stop_ids(self) -> set[int]:
        """Token ids that end an answer: the tokenizer's eos and the generation config's (Qwen lists two)."""
        ids = self.model.generation_config.eos_token_id if self.model.generation_config is not None else None
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        return set(ids) | ({self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set())
