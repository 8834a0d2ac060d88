"""Which kit code a stage runs: its notebook's transitive `cacovid_lib` imports, as the deps dvc.yaml must declare.

    python -m cacovid_lib.pipeline.code_deps            # prints each stage's code deps
    python -m cacovid_lib.pipeline.code_deps --write    # rewrites them in dvc.yaml and extras/dvc.yaml (each
                                                        # stage's cacovid_lib/ lines)

A stage depends on exactly the library files it imports, directly or through other kit modules (not on the whole
package), so that a change in one module reruns only the stages that run it: a new baseline in compare/ does not
rebuild the world or retrain the video LLM. tests/test_layout.py fails when a dvc file misses one.
"""
from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

from cacovid_lib.io_utils import KitInputError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cacovid_lib"
DVC_FILES = ("dvc.yaml", "extras/dvc.yaml", "paper/dvc.yaml")
"""the embedded pipeline (`dvc repro`), its extra stages (`dvc repro extras/dvc.yaml`) and the paper's GPU pipeline
(`make paper`); all name deps from the project root"""


def imported_modules(source: str) -> set[str]:
    """Every `cacovid_lib...` module named by an import statement anywhere in `source` (also inside functions).
    `from cacovid_lib.compare import baselines` names cacovid_lib.compare.baselines."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cacovid_lib")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cacovid_lib"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if module_file(sub) is not None else node.module)
    return found


def module_file(module: str) -> Path | None:
    """cacovid_lib.a.b -> cacovid_lib/a/b.py (or the package's __init__.py); None if there is no such module."""
    path = ROOT.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


@functools.lru_cache(maxsize=None)
def _file_imports(file: Path) -> frozenset[str]:
    """imported_modules of a kit file, parsed once per process (the layout tests walk the same files per stage)."""
    return frozenset(imported_modules(file.read_text()))


def transitive_files(source: str) -> set[Path]:
    """The kit's source files that running `source` imports, directly or through other kit modules."""
    todo, seen = list(imported_modules(source)), set()
    while todo:
        file = module_file(todo.pop())
        if file is None or file in seen:
            continue
        seen.add(file)
        todo += _file_imports(file)
    return seen


def dep_paths(files: set[Path]) -> list[str]:
    """Files -> dvc.yaml deps, relative to the project root (the rooms' __init__.py files hold only a docstring)."""
    return sorted(f.relative_to(ROOT).as_posix() for f in files if f.name != "__init__.py")


def notebook_source(notebook: Path) -> str:
    """The code of a notebook (its jupytext .py twin where there is one)."""
    twin = notebook.with_suffix(".py")
    if twin.is_file():
        return twin.read_text()
    if not notebook.is_file():
        raise KitInputError(f"{notebook}: notebook not found")
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def stage_code_deps(notebook) -> list[str]:
    """The code deps dvc.yaml must declare for the stage that runs `notebook`."""
    # the stage command runs the notebook through its pipeline's stage runner
    runner = "import cacovid_lib.paper.stage\n" if Path(notebook).parts[:2] == ("notebooks", "paper") else \
        "import cacovid_lib.pipeline.stage\n"
    return dep_paths(transitive_files(notebook_source(ROOT / notebook) + "\n" + runner))


def rewrite_dvc_yaml(text: str) -> str:
    """dvc.yaml's text with every stage's `- cacovid_lib/...` dep lines replaced by its derived code deps (placed
    right after the stage's notebook dep); comments and everything else stay as they are."""
    out = []
    for line in text.splitlines(keepends=True):
        item = line.strip()
        if item.startswith("- cacovid_lib/") or item == "- cacovid_lib":
            continue
        out.append(line)
        if item.startswith("- notebooks/") and item.endswith(".ipynb"):
            indent = line[:len(line) - len(line.lstrip())]
            out += [f"{indent}- {d}\n" for d in stage_code_deps(item[2:])]
    return "".join(out)


def dvc_stages() -> dict[str, dict]:
    """Every stage of DVC_FILES by name (`paper/dvc.yaml:report` outside the root dvc.yaml, as DVC names them) -> its
    spec (a foreach stage's `do` block, which its runs share)."""
    import yaml

    return {(name if dvc_file == "dvc.yaml" else f"{dvc_file}:{name}"): spec.get("do", spec) for dvc_file in DVC_FILES
            for name, spec in yaml.safe_load((ROOT / dvc_file).read_text())["stages"].items()}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--write" in argv:
        for name in DVC_FILES:
            (ROOT / name).write_text(rewrite_dvc_yaml((ROOT / name).read_text()))
        return 0
    for stage, spec in dvc_stages().items():
        notebook = next(d for d in spec["deps"] if str(d).endswith(".ipynb"))
        print(f"{stage}:\n" + "".join(f"  - {d}\n" for d in stage_code_deps(notebook)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
