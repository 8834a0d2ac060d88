"""Write each notebook's .ipynb from its edited .py twin, in the form the repository stores (no outputs, no run
metadata), so that the stage's dependency changes only where its code did.

    python scripts/sync_notebooks.py                  # every notebooks/NN-name.py
    python scripts/sync_notebooks.py notebooks/06-train-policy.py

It is `jupytext --update --to ipynb` (cells keep their ids) followed by the pre-save hook JupyterLab applies under
`make lab` (.jupyter/jupyter_server_config.py), which drops what jupytext's command line adds to the metadata.
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

from cacovid_lib.io_utils import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def store_without_outputs():
    """The kit's pre-save hook, read from the JupyterLab config that defines it."""
    config = ROOT / ".jupyter" / "jupyter_server_config.py"
    namespace = {"get_config": lambda: types.SimpleNamespace(ContentsManager=types.SimpleNamespace())}
    exec(compile(config.read_text(), str(config), "exec"), namespace)
    return namespace["store_without_outputs"]


def sync(py_file: Path) -> bool:
    """Rewrite py_file's .ipynb twin; True if its bytes changed."""
    import jupytext
    import nbformat

    ipynb = py_file.with_suffix(".ipynb")
    nb = jupytext.read(py_file)
    if ipynb.is_file():  # keep the stored cells' ids, as --update does
        stored = jupytext.read(ipynb)
        nb = jupytext.combine.combine_inputs_with_outputs(nb, stored, fmt="ipynb")
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    model = {"type": "notebook", "content": nb}
    store_without_outputs()(model)
    old = ipynb.read_text() if ipynb.is_file() else ""
    new = jupytext.writes(nbformat.from_dict(model["content"]), fmt="ipynb").rstrip("\n") + "\n"
    if new != old:
        write_text_atomic(ipynb, new)
    return new != old


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="the .py twins (default: notebooks/*.py)")
    args = parser.parse_args(argv)
    for py_file in args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.py")):
        if sync(py_file):
            print(f"wrote {py_file.with_suffix('.ipynb')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
