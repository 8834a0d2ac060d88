"""`from_pretrained` a model and its tokenizer from a local folder (never the network), with one-line errors."""
from __future__ import annotations

from pathlib import Path

import torch

from cacovid_lib.io_utils import KitInputError


def load_pretrained(model_class, folder, device="cpu", dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    """`model_class.from_pretrained` and `AutoTokenizer.from_pretrained` on a local folder (local files only)
    -> (model in eval mode on `device`, tokenizer; off the CPU its weights never pass through host memory). A missing folder, a folder without config.json or weights that do
    not load give one KitInputError line naming the folder."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise KitInputError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise KitInputError(f"{folder}: not a model folder (no config.json)")
    try:
        # off the CPU, the weights load straight onto `device` (device_map): every rank of a multi-GPU run would
        # otherwise first hold the whole model in host memory (8 x 16 GB for a 7B model in bf16); on the CPU the
        # call is the one it always was
        placement = {} if torch.device(device).type == "cpu" else {"device_map": {"": torch.device(device)}}
        model = model_class.from_pretrained(folder, dtype=dtype, attn_implementation=attn_implementation, local_files_only=True,
                                            **placement)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, ImportError) as err:
        raise KitInputError(f"{folder}: cannot load model ({str(err).splitlines()[0][:160]})") from None
    return model.to(device).eval(), tokenizer
