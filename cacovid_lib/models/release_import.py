"""Import the authors' released CaCoVID policy (docs/method.md §7) into a kit policy folder.

The release is a full LLaVA-OneVision checkpoint in llava-hf layout (sharded safetensors + index)
whose `compression_policy.*` tensors are the policy; everything else is the unchanged base model
and is never read here: only the shards that hold policy tensors are opened, and only those
tensors are read from them.

    python -m cacovid_lib.models.release_import CHECKPOINT_DIR OUT_DIR --model MODEL_DIR

MODEL_DIR is the base model the policy runs on (any LLaVA-OneVision folder `pretrained.load_pretrained` loads;
default: the checkpoint folder itself, which is the 7B base model). The result loads with
`policy.load_policy(OUT_DIR, language_model)`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from cacovid_lib.io_utils import KitInputError, read_json
from cacovid_lib.method.policy import CompressionPolicy, save_policy

PREFIX = "compression_policy."
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def _dropped(name: str) -> bool:
    """Release tensors the kit does not use: the 3-way mode-selection head (its loss is never used,
    docs/method.md §2) and any rotary buffer (recomputed from the model config)."""
    return name.startswith("mode_selection.") or "rotary_emb" in name


def check_safetensors_file(file: Path) -> None:
    """A safetensors file whose header reads and whose size is the one its header gives (8 bytes of header length,
    the JSON header, then every tensor's bytes up to the largest end offset); a cut-off or partial download is a
    one-line error here, reading only the header, before minutes of loading a base model."""
    file = Path(file)
    size = file.stat().st_size
    again = "download it again"
    with open(file, "rb") as f:
        length_bytes = f.read(8)
        if len(length_bytes) < 8:
            raise KitInputError(f"{file}: truncated ({size} bytes, not even a safetensors header); {again}")
        header_length = int.from_bytes(length_bytes, "little")
        if header_length > size - 8:
            raise KitInputError(f"{file}: cannot read safetensors header (it claims {header_length} bytes, the file has "
                                f"{size}): truncated or not a safetensors file; {again}")
        try:
            header = json.loads(f.read(header_length))
            ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
        except (ValueError, UnicodeDecodeError, TypeError, KeyError, IndexError, AttributeError):
            raise KitInputError(f"{file}: cannot read safetensors header: not a safetensors file; {again}") from None
    expected = 8 + header_length + max(ends, default=0)
    if size != expected:
        problem = "truncated" if size < expected else "longer than its header says"
        raise KitInputError(f"{file}: {problem} ({size} bytes, its header gives {expected}); {again}")


def checkpoint_files(folder) -> list[Path]:
    """The safetensors files of a model folder: those its index lists, else its single model.safetensors, else none
    (a folder in another format is left to its loader)."""
    folder = Path(folder)
    if (folder / INDEX).is_file():
        index = read_json(folder / INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise KitInputError(f"{folder / INDEX}: malformed index (needs a weight_map of tensor name -> shard file)")
        return [folder / shard for shard in sorted(set(weight_map.values()))]
    return [folder / SINGLE] if (folder / SINGLE).is_file() else []


def check_checkpoint_files(folder) -> None:
    """Every safetensors file of `folder` (checkpoint_files) is there and whole (check_safetensors_file)."""
    for file in checkpoint_files(folder):
        if not file.is_file():
            raise KitInputError(f"{file}: shard listed in {INDEX} is missing")
        check_safetensors_file(file)


def _policy_locations(checkpoint_dir) -> dict[str, Path]:
    """Policy tensor name (prefix stripped, dropped ones left out) -> the shard holding it.
    Reads only the index json (or the single file's header); checks the shards that will be read exist."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise KitInputError(f"{folder}: checkpoint folder not found")
    if (folder / INDEX).is_file():
        index = read_json(folder / INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise KitInputError(f"{folder / INDEX}: malformed index (needs a weight_map of tensor name -> shard file)")
        located = {name: folder / shard for name, shard in weight_map.items() if name.startswith(PREFIX)}
    elif (folder / SINGLE).is_file():
        try:
            with safe_open(str(folder / SINGLE), framework="pt") as f:  # opening reads the header only
                located = {name: folder / SINGLE for name in f.keys() if name.startswith(PREFIX)}
        except SafetensorError as err:
            raise KitInputError(f"{folder / SINGLE}: cannot read safetensors ({err})") from None
    else:
        raise KitInputError(f"{folder}: no {INDEX} and no {SINGLE}: not a safetensors checkpoint")
    if not located:
        raise KitInputError(f"{folder}: has no {PREFIX}* tensors: not a CaCoVID checkpoint")
    # Only the shards we read must exist (and be whole): a user may have fetched just those for a separate base model.
    for shard in sorted(set(located.values())):
        if not shard.is_file():
            raise KitInputError(f"{shard}: shard listed in {INDEX} is missing")
        check_safetensors_file(shard)
    return {name[len(PREFIX):]: shard for name, shard in located.items() if not _dropped(name[len(PREFIX):])}


def read_release_policy_tensors(checkpoint_dir) -> dict[str, torch.Tensor]:
    """The release's policy tensors, `compression_policy.` stripped (names as in `CompressionPolicy`).

    Opens only the shards that hold policy tensors and reads only those tensors, so the 7B base model
    never enters memory. The release's `mode_selection.*` head (a 3-way head whose loss is never used,
    docs/method.md §2) is dropped without being read."""
    by_shard: dict[Path, list[str]] = {}
    for name, shard in _policy_locations(checkpoint_dir).items():
        by_shard.setdefault(shard, []).append(name)
    tensors = {}
    for shard, names in sorted(by_shard.items()):
        try:
            with safe_open(str(shard), framework="pt") as f:
                for name in names:
                    tensors[name] = f.get_tensor(PREFIX + name)
        except SafetensorError as err:
            raise KitInputError(f"{shard}: cannot read policy tensors ({err})") from None
    return tensors


def import_release_policy(checkpoint_dir, out_dir, language_model) -> CompressionPolicy:
    """Load the release's policy onto `language_model`'s architecture (strict: every tensor present,
    same shapes; cast to the model's dtype) and save it as a kit policy folder in `out_dir`."""
    released = read_release_policy_tensors(checkpoint_dir)
    policy = CompressionPolicy.from_llm(language_model)
    expected = {k: v for k, v in policy.state_dict().items() if "rotary_emb" not in k}
    for name, tensor in expected.items():
        if name not in released:
            raise KitInputError(f"{checkpoint_dir}: {PREFIX}{name} is missing")
        if released[name].shape != tensor.shape:
            raise KitInputError(f"{checkpoint_dir}: {PREFIX}{name} has shape {list(released[name].shape)}, "
                                f"the policy for this model expects {list(tensor.shape)} (another base model?)")
    unexpected = sorted(set(released) - set(expected))
    if unexpected:
        raise KitInputError(f"{checkpoint_dir}: {PREFIX}{unexpected[0]} is not a tensor of the kit's policy "
                            f"({len(unexpected)} such tensors)")
    policy.load_state_dict({k: released[k].to(v.dtype) for k, v in expected.items()}, strict=False)
    save_policy(policy, out_dir, base_model=str(checkpoint_dir), extra={"source": "release_import"})
    return policy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="released checkpoint folder (safetensors shards + index)")
    parser.add_argument("out", help="kit policy folder to write")
    parser.add_argument("--model", default=None, help="base model folder; default: the checkpoint folder")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype to load the base model in (bfloat16 halves the memory of a 7B model)")
    args = parser.parse_args(argv)
    try:
        # fail fast, before spending minutes loading a 7B base model: the policy's shards, then every shard of the base
        # model (the checkpoint's own when --model is not given) are there and whole
        _policy_locations(args.checkpoint)
        check_checkpoint_files(args.model or args.checkpoint)
        from transformers import LlavaOnevisionForConditionalGeneration
        from transformers.utils import logging as hf_logging

        from cacovid_lib.models.pretrained import load_pretrained

        hf_logging.set_verbosity_error()  # the base model load lists every compression_policy.* tensor as "unexpected"
        model, _ = load_pretrained(LlavaOnevisionForConditionalGeneration, args.model or args.checkpoint,
                                   dtype=getattr(torch, args.dtype))
        import_release_policy(args.checkpoint, args.out, model.model.language_model)
    except (KitInputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
