"""The small video LLM's word-level tokenizer, built with the `tokenizers` library from the world's vocabulary.

Every word the world writes (questions, options, the prompt template's role words) and every word of the dense
captions that the video LLM's label loss aligns its video tokens to is one token. The vocabulary's order fixes which
embedding row each word draws at initialisation, so it is kept as the recipe was validated: with the words of the
retired counting and "which appears first" questions, and the chat template's `<|im_start|>` marker unregistered, so
that it reads as seven `<unk>` (the model learned with them; it answers the same)."""
from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from cacovid_lib.data.schema import LETTERS
from cacovid_lib.embedded.world import CLUTTER_COLOURS, CLUTTER_SHAPES, COLOURS, EXTRA_SHAPES, SHAPES

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# words of the question templates, the prompt template (models/llava_onevision.py DEFAULT_PROMPT) and the
# caption label "background"
TEMPLATE_WORDS = (
    "what colour shape is the object which of these objects appears in video options answer "
    "background user assistant"
).split()
PUNCTUATION = ["?", ".", ":", ","]
RETIRED_QUESTION_WORDS = ("how", "many", "are", "there", "first", "zero", "one", "two", "three")
# dense captions of the tokens no question names (small_vlm.content_word_targets): a background cell's tone, each
# channel dark, mid or light (27 tones, index 9r + 3g + b), and its texture, plain or the orientation of its edges
# (structure tensor), "speckled" where none dominates: fine enough that background tokens stay as varied as their pixels
BACKGROUND_TONES = tuple(f"tone{r}{g}{b}" for r in range(3) for g in range(3) for b in range(3))
BACKGROUND_TEXTURES = ("plain", "vertical", "rising", "horizontal", "falling", "speckled")
# clutter is captioned by its own colour and shape
CAPTION_WORDS = tuple(CLUTTER_COLOURS) + CLUTTER_SHAPES + BACKGROUND_TONES + BACKGROUND_TEXTURES


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is exactly the world's words (lower-cased) and the captions' words."""
    words = SPECIAL_TOKENS + TEMPLATE_WORDS + list(COLOURS) + list(SHAPES) + [c.lower() for c in LETTERS] + PUNCTUATION
    words += list(RETIRED_QUESTION_WORDS) + list(EXTRA_SHAPES) + list(CAPTION_WORDS)
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
