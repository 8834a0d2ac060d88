"""The kit's video-LLM interface: `VideoLLM`, the base class every backend adapter subclasses (LLaVA-OneVision,
Qwen2.5-VL), and `Prompt`, the token ids around the video. The policy, selection, baselines and evaluation see a
model only through this interface."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from cacovid_lib.method.policy import PolicyInputs


@dataclass
class Prompt:
    """Token ids of one prompt around the video (`prefix <video tokens> suffix`) and its option continuations."""

    prefix_ids: list[int]
    suffix_ids: list[int]
    option_ids: list[list[int]]


class VideoLLM:
    """What every backend's adapter shares: its device, the video-token count of its grid (t, h, w), the policy's
    inputs and greedy decoding. Subclasses set `model`, `tokenizer` and `grid`, and give `assemble` and
    `pad_positions`."""

    @property
    def device(self):
        return self.model.device

    @property
    def num_video_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @torch.no_grad()
    def policy_inputs(self, prompts: list[Prompt], video_embeds: torch.Tensor) -> PolicyInputs:
        """What the policy sees (METHOD §2): the full prompts with every video token, right-padded.
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
