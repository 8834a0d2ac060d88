"""The small video LLM's word-level tokenizer, built with the `tokenizers` library from the world's vocabulary."""
from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from cacovid_lib.data.schema import LETTERS
from cacovid_lib.embedded.world import COLOURS, SHAPES, WorldSpec, question_words

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# words of the question templates, the prompt template and the auxiliary "background" label
TEMPLATE_WORDS = (
    "what colour shape is the object which of these objects appears in video options answer "
    "background user assistant"
).split()
PUNCTUATION = ["?", ".", ":", ","]


def build_tokenizer(spec: WorldSpec | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is exactly the world's words (lower-cased). The busy world's new
    question words come last, so the original world's vocabulary (and model) keeps its ids."""
    words = SPECIAL_TOKENS + TEMPLATE_WORDS + list(COLOURS) + list(SHAPES) + [c.lower() for c in LETTERS] + PUNCTUATION
    words += list(question_words(spec or WorldSpec()))
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    return tokenizer
