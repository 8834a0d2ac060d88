"""Load a real video LLM (LLaVA-OneVision or Qwen2.5-VL) from a local folder or the local Hugging Face cache and
wrap it in the kit's adapter (with `chat_template`, the prompt template that puts a real question through the model's
own chat template); never reaches the network, and every bad input is a one-line KitInputError."""
from __future__ import annotations

from pathlib import Path

import torch

from cacovid_lib.io_utils import KitInputError, read_json
from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.models.pretrained import load_pretrained
from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM

SUPPORTED_MODEL_TYPES = ("llava_onevision", "qwen2_5_vl")  # config.json's model_type
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = ("sdpa", "eager", "flash_attention_2")


def check_dtype(dtype) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' (or the torch dtype itself) -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise KitInputError(f"dtype: {dtype!r} is not supported; use one of {', '.join(DTYPES)}")


def check_attention(attn_implementation: str) -> str:
    """One of ATTENTION; flash_attention_2 only where the flash-attn package is installed."""
    from transformers.utils import is_flash_attn_2_available

    if attn_implementation not in ATTENTION:
        raise KitInputError(f"attn_implementation: {attn_implementation!r} is not supported; use one of {', '.join(ATTENTION)}")
    if attn_implementation == "flash_attention_2" and not is_flash_attn_2_available():
        raise KitInputError("attn_implementation: flash_attention_2 needs the flash-attn package (and a CUDA GPU), which "
                            f"is not available here; use one of {', '.join(ATTENTION)}")
    return attn_implementation


def resolve_model_folder(path_or_hub_id) -> Path:
    """An existing folder as is; anything else is a hub id looked up in the local Hugging Face cache only."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    hub_id = str(path_or_hub_id)
    try:
        return Path(snapshot_download(hub_id, local_files_only=True))  # local_files_only: the cache, never the network
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a valid repo id: same advice
        raise KitInputError(f"{hub_id}: not a local folder and not in the Hugging Face cache; download it on a machine "
                            f"with network (huggingface-cli download {hub_id}) and pass the local path") from None


def model_type(folder: Path) -> str:
    """config.json's model_type, or a one-line error naming the supported ones."""
    if not (folder / "config.json").is_file():
        raise KitInputError(f"{folder}: not a model folder (no config.json)")
    kind = read_json(folder / "config.json").get("model_type")
    if kind not in SUPPORTED_MODEL_TYPES:
        raise KitInputError(f"{folder}: model type {kind!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return kind


def load_video_llm(path_or_hub_id, num_frames: int, device="cpu", dtype="float32", attn_implementation: str = "sdpa",
                   frame_size: tuple[int, int] | None = None) -> LlavaOneVisionVideoLLM | Qwen25VLVideoLLM:
    """The video LLM in `path_or_hub_id` (a local folder, or a hub id already in the local cache) behind the kit's
    adapter: LlavaOneVisionVideoLLM for llava_onevision, Qwen25VLVideoLLM for qwen2_5_vl.
    frame_size (height, width): the size every frame is resized to, Qwen2.5-VL only (LLaVA-OneVision's is fixed by
    its vision tower); None = qwen2_5_vl.DEFAULT_FRAME_SIZE."""
    from transformers import LlavaOnevisionForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    dtype, attn_implementation = check_dtype(dtype), check_attention(attn_implementation)
    folder = resolve_model_folder(path_or_hub_id)
    kind = model_type(folder)
    if kind == "llava_onevision":
        if frame_size is not None:
            raise KitInputError("frame_size: applies to qwen2_5_vl only; LLaVA-OneVision frames are resized to its "
                                "vision tower's image_size")
        model, tokenizer = load_pretrained(LlavaOnevisionForConditionalGeneration, folder, device, dtype, attn_implementation)
        return LlavaOneVisionVideoLLM(model, tokenizer, num_frames)
    model, tokenizer = load_pretrained(Qwen2_5_VLForConditionalGeneration, folder, device, dtype, attn_implementation)
    return Qwen25VLVideoLLM(model, tokenizer, num_frames, **({} if frame_size is None else {"frame_size": frame_size}))


# ---- the model's chat template, for real prompts (benchmarks, Video-R1 training) ----------------------------
# What goes before the question in the one user message: lmms-eval's llava_hf model (which the CaCoVID release
# evaluates with) writes "<video>\n" + question; Qwen2.5-VL's template writes its video markers, then the question.
VIDEO_CONTENT = {"llava_onevision": "<video>\n", "qwen2_5_vl": "<|vision_start|><|video_pad|><|vision_end|>"}
# Qwen2's ChatML with its default system prompt: the fallback for tokenizers without a chat template
CHATML = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
_QUESTION = "QUESTION7F3A9C"  # stands for the question while the chat template is rendered


def chat_template(vlm: VideoLLM) -> str:
    """A prompt template for the adapter (`vlm.prompt_template`) that puts the video and the question
    (`{problem}`, the item's whole question text) through the model's own chat template: one user message,
    generation prompt added. Rendered with the tokenizer's chat template, first with the message as a string (as
    lmms-eval's llava_hf model passes it), then, for templates that only render typed content lists (llava-hf's
    processor template), as [video, text]; a tokenizer without a usable chat template gets Qwen2's ChatML, the
    format both models' LLMs were tuned on."""
    kind = "qwen2_5_vl" if isinstance(vlm, Qwen25VLVideoLLM) else "llava_onevision"
    forms = [VIDEO_CONTENT[kind] + _QUESTION, [{"type": "video"}, {"type": "text", "text": _QUESTION}]]
    for content in forms:
        try:
            text = vlm.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                     add_generation_prompt=True)
        except Exception:  # no template, or one that cannot render this form (jinja errors vary): try the next form
            continue
        if isinstance(text, str) and text.count(_QUESTION) == 1 and text.count(vlm.video_mark) == 1:
            return _as_template(text)
    return _as_template(CHATML.format(content=VIDEO_CONTENT[kind] + _QUESTION))


def _as_template(text: str) -> str:
    # literal braces of the rendered text must survive str.format; the question's place becomes {problem}
    return text.replace("{", "{{").replace("}", "}}").replace(_QUESTION, "{problem}")
