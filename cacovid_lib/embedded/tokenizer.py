"""The small video LLM's word-level tokenizer, built with the `tokenizers` library from the world's vocabulary."""
from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from cacovid_lib.data.schema import LETTERS
from cacovid_lib.embedded.world import CLUTTER_COLOURS, CLUTTER_SHAPES, COLOURS, SHAPES, WorldSpec, question_words

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# words of the question templates, the prompt template and the auxiliary "background" label
TEMPLATE_WORDS = (
    "what colour shape is the object which of these objects appears in video options answer "
    "background user assistant"
).split()
PUNCTUATION = ["?", ".", ":", ","]
# dense captions of the tokens no question names (small_vlm.content_word_targets): a background cell's tone, one word
# per corner of the colour cube (each channel darker or lighter than BACKGROUND_TONE_SPLIT), and its texture
BACKGROUND_TONES = ("charcoal", "navy", "forest", "teal", "maroon", "plum", "olive", "slate")  # index = 4r + 2g + b
BACKGROUND_TEXTURES = ("plain", "patterned")
# the finer captions (vlm.train.caption_detail: fine): each channel dark, mid or light (27 tones, index 9r + 3g + b),
# and a patterned cell's texture by the orientation of its edges (structure tensor), "speckled" where none dominates
FINE_TONES = tuple(f"tone{r}{g}{b}" for r in range(3) for g in range(3) for b in range(3))
FINE_TEXTURES = ("plain", "vertical", "rising", "horizontal", "falling", "speckled")


def background_caption_words(detail: str = "coarse") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A background cell's caption words at `detail`: (tone words, texture words), coarse (8 tones, plain or
    patterned) or fine (FINE_TONES, FINE_TEXTURES). Any other detail is a ValueError."""
    if detail not in ("coarse", "fine"):
        raise ValueError(f"caption_detail: {detail!r} is not valid; valid: coarse, fine")
    return (BACKGROUND_TONES, BACKGROUND_TEXTURES) if detail == "coarse" else (FINE_TONES, FINE_TEXTURES)


def caption_words(detail: str = "coarse") -> tuple[str, ...]:
    """The words of the dense captions of clutter and background (vlm.train.aux_tokens: content) at `detail`."""
    tones, textures = background_caption_words(detail)
    return tuple(CLUTTER_COLOURS) + CLUTTER_SHAPES + tones + textures


def build_tokenizer(spec: WorldSpec | None = None, extra_words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is exactly the world's words (lower-cased). The busy world's new
    question words come next, then `extra_words` (e.g. caption_words()), so earlier vocabularies keep their ids."""
    words = SPECIAL_TOKENS + TEMPLATE_WORDS + list(COLOURS) + list(SHAPES) + [c.lower() for c in LETTERS] + PUNCTUATION
    words += list(question_words(spec or WorldSpec())) + list(extra_words)
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
