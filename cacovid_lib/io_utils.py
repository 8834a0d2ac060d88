"""Atomic file writes, resumable JSON-lines records, the kit's one-line input error and the ranges a config's numbers
are checked against."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class KitInputError(ValueError):
    """Bad input (a file, a folder, a parameter). Its message is one line: `<path>: <problem>`."""


@dataclass(frozen=True)
class Range:
    """An allowed interval of a number (or of each number of a list): low/high None for unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        return not ((self.low is not None and (value < self.low or (self.low_open and value == self.low))) or
                    (self.high is not None and (value > self.high or (self.high_open and value == self.high))))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


COUNT = Range(1)
"""steps, items, repeats: at least 1"""
SEED = Range(0)
RATIO = Range(0, 1, low_open=True)
"""retention ratios and shares: in (0, 1]"""
POSITIVE = Range(0, low_open=True)


def check_ranges(obj, **ranges: Range) -> None:
    """For __post_init__: each named field (a number, or a non-empty list of numbers) lies in its Range, else one
    KitInputError line `field: value must be in RANGE` (parse puts the block's name in front: `benchmark.field`)."""
    for name, allowed in ranges.items():
        value = getattr(obj, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and not value:
            raise KitInputError(f"{name}: needs at least one value")
        for i, v in enumerate(values):
            if v not in allowed:
                key = f"{name}[{i}]" if isinstance(value, (list, tuple)) else name
                raise KitInputError(f"{key}: {v!r} must be {allowed}")


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


def read_jsonl_records(path, key: str, run: dict | None = None) -> dict[str, dict]:
    """str(record[key]) -> record of the JSON lines already in `path` (a resumable run's output; {} if none).
    A last line cut off by a kill is removed from the file (its item is redone); a record whose `run` fields differ
    from `run` belongs to another run: a one-line error."""
    path = Path(path)
    if not path.is_file():
        return {}
    text = path.read_text()
    lines = text.split("\n")
    records = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = n == len(lines)  # non-empty only when the file does not end with a newline: the run was killed
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if not last:
                raise KitInputError(f"{path}: line {n} is not valid JSON") from None
            path.write_text(text[:len(text) - len(line)])  # cut off while written: dropped, redone
            break
        if last:  # complete, only its newline was not written
            with open(path, "a") as f:
                f.write("\n")
        differ = [k for k in (run or {}) if record.get(k) != run[k]]
        if differ:
            raise KitInputError(f"{path}: holds another run ({differ[0]} {record.get(differ[0])!r}, this run "
                                f"{run[differ[0]]!r}); choose another output file")
        records[str(record.get(key))] = record
    return records


def append_jsonl(path, records: list[dict]) -> None:
    """Append records as JSON lines, on disk before returning: a kill loses at most the batch being computed."""
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def run_cli(body: Callable[[], int]) -> int:
    """A command line's exit status: body()'s, or 2 with `error: <one line>` on stderr for bad input or a missing file."""
    try:
        return body()
    except (KitInputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
