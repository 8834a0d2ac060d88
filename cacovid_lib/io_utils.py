"""Atomic file writes and the kit's one-line input error."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class KitInputError(ValueError):
    """Bad input (a file, a folder, a parameter). Its message is one line: `<path>: <problem>`."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json_atomic(path, obj, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path):
    """Read a JSON file, turning a missing or malformed file into a one-line KitInputError."""
    path = Path(path)
    if not path.is_file():
        raise KitInputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise KitInputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def save_figure(fig, path, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically (format from the suffix), creating the folder."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip("."))


def save_csv(df, path) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
