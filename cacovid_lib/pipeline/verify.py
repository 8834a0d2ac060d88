"""`make verify`: after `make repro`, compare every DVC output with the committed dvc.lock, stage by stage.

    python -m cacovid_lib.pipeline.verify                  # the working dvc.lock against git's HEAD:dvc.lock

`dvc repro` rewrites dvc.lock with the md5 of every output it made; the committed dvc.lock holds the md5s of the
committed run. Per stage this prints `identical` when every output's md5 matches, or what differs: for a JSON or CSV
file the keys or columns, for a markdown table its cells (row.column), so a reader sees whether a result moved or only a
measured time. Three kinds of difference
are expected on any rerun and named as such rather than counted against "identical":

- executed notebooks (reports/notebooks/): papermill records each cell's start time and duration in them;
- timings: metrics keys, CSV columns and markdown table columns that are measured times or memory (`*_ms`, `*_s`,
  `*_mb`, shares of a timed forward), and report lines that quote a time in ms;
- `runtime_*` keys of a metrics file: the CPU the stage ran on (cpu_pins.runtime_record), which differs between machines.

A stage that differs only in these prints `identical (results)` and what else it carries. Exit status 1 when a
result differs or a stage is missing, 0 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from cacovid_lib.io_utils import KitInputError

TIMING = re.compile(r"(_ms|_s|_mb|seconds|_seconds_per_step)$|^seconds|_share_of_(full_prefill|forward)$"
                    r"|_faster_than_|^peak_memory")
"""metrics keys, CSV columns and markdown table columns that are measured times or memory (or a comparison of them)"""
RUNTIME = re.compile(r"^runtime_|^pins_|^(torch_cpu_capability|torch_threads|torch|numpy|cpu)$")
"""the run record: keys of a metrics file, rows of reports/README.md's "Ran under" tables"""
TIMED_SENTENCE = re.compile(r"\b[0-9.]+ ms\b|, this machine \(")
"""a line of prose that quotes a measured time (the report's headline, a table's caption)"""
VOLATILE_DIRS = ("reports/notebooks/",)


def lock_outs(lock: dict) -> dict[str, dict[str, str]]:
    """{stage: {out path: md5}} of a parsed dvc.lock."""
    return {stage: {o["path"]: o.get("md5", "") for o in spec.get("outs", [])}
            for stage, spec in lock.get("stages", {}).items()}


def _flatten(value, prefix="") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _markdown_fields(text: str) -> dict:
    """A markdown file as fields: each table cell as `<row key>.<column>` (the row key is its first cell, the column
    its header), each other non-empty line as itself."""
    fields, lines, i = {}, text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|[\s:|-]+\|", lines[i + 1].strip()):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                for column, cell in zip(header[1:], cells[1:]):
                    fields[f"{cells[0]}.{column}"] = cell
                i += 1
            continue
        if line.strip():
            fields[line.strip()] = True
        i += 1
    return fields


def _is_timing(field: str) -> bool:
    row, _, column = field.rpartition(".") if not field.startswith(("- ", "#")) else ("", "", field)
    return bool(TIMING.search(column) or TIMING.search(row.split(".")[-1]) or TIMED_SENTENCE.search(field))


def differing_fields(path: str, committed: str, current: str) -> list[str] | None:
    """The keys (JSON) or columns (CSV) whose values differ between two versions of a file; None for other files."""
    if path.endswith(".json"):
        old, new = _flatten(json.loads(committed)), _flatten(json.loads(current))
    elif path.endswith(".md"):
        old, new = _markdown_fields(committed), _markdown_fields(current)
    elif path.endswith(".csv"):
        def columns(text):
            rows = list(csv.DictReader(io.StringIO(text)))
            return {name: [r.get(name) for r in rows] for name in (rows[0] if rows else {})}
        old, new = columns(committed), columns(current)
    else:
        return None
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def classify(path: str, fields: list[str] | None) -> tuple[list[str], list[str]]:
    """(result differences, expected differences) of one output whose md5 differs."""
    if path.startswith(VOLATILE_DIRS):
        return [], [f"{path} (executed notebook: run times)"]
    if fields is None:
        return [path], []
    runtime = [f for f in fields if RUNTIME.search(f.split(".")[0])]
    timings = [f for f in fields if f not in runtime and _is_timing(f)]
    results = [f for f in fields if f not in runtime and f not in timings]
    expected = ([f"{path}: timings ({_names(timings)})"] if timings else []) + \
               ([f"{path}: runtime ({_names(runtime)})"] if runtime else [])
    return ([f"{path}: {_names(results)}"] if results else []), expected


def _names(fields: list[str], width: int = 60) -> str:
    """Fields for one line of output: each cut to `width` characters (a line of prose can be long)."""
    return ", ".join(f if len(f) <= width else f[:width - 1] + "…" for f in fields)


def git_show(ref_path: str, root: Path) -> str | None:
    """A file's text at a git ref; None if it is not in git there, or not text (a figure: compared by its md5 only)."""
    out = subprocess.run(["git", "show", ref_path], cwd=root, capture_output=True)
    if out.returncode != 0:
        return None
    try:
        return out.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None


def verify(root=".", lock_file="dvc.lock", ref="HEAD") -> tuple[bool, list[str]]:
    """(every stage's results identical, one line per stage) for the working `lock_file` against `ref`'s."""
    root = Path(root)
    committed_text = git_show(f"{ref}:{lock_file}", root)
    if committed_text is None:
        raise KitInputError(f"{lock_file}: not in git at {ref}")
    if not (root / lock_file).is_file():
        raise KitInputError(f"{root / lock_file}: not found (run `make repro` first)")
    committed = lock_outs(yaml.safe_load(committed_text) or {})
    current = lock_outs(yaml.safe_load((root / lock_file).read_text()) or {})
    ok, lines = True, []
    width = max(map(len, committed), default=0)
    for stage, outs in committed.items():
        if stage not in current:
            ok = False
            lines.append(f"{stage:<{width}}  missing: not run (make repro first)")
            continue
        results, expected = [], []
        for path, md5 in outs.items():
            now = current[stage].get(path)
            if now == md5:
                continue
            old_text, new_file = git_show(f"{ref}:{path}", root), root / path
            fields = None
            if now is not None and old_text is not None and new_file.is_file():
                fields = differing_fields(path, old_text, new_file.read_text(errors="replace"))
            r, e = classify(path, fields if now is not None else None)
            results += r
            expected += e
        ok &= not results
        if results:
            lines.append(f"{stage:<{width}}  DIFFERS: " + "; ".join(results))
        elif expected:
            lines.append(f"{stage:<{width}}  identical (results); also differ, as on any rerun: " + "; ".join(expected))
        else:
            lines.append(f"{stage:<{width}}  identical")
    return ok, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default="dvc.lock", help="the dvc.lock to check (relative to the project root)")
    parser.add_argument("--ref", default="HEAD", help="the git revision whose dvc.lock is the reference")
    args = parser.parse_args(argv)
    try:
        ok, lines = verify(".", args.lock, args.ref)
    except KitInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print("all stages identical" if ok else "results differ from the committed run")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
