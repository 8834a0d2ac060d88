"""The layout's rules: imports run downhill between the rooms, and every DVC stage declares the code it runs."""
import ast
from pathlib import Path

import pytest
import yaml

from cacovid_lib.pipeline.code_deps import dvc_stages, imported_modules, stage_code_deps, transitive_files
from conftest import ROOT

PACKAGE = ROOT / "cacovid_lib"
# room -> the kit rooms it may import from (the floor, io_utils and cpu_pins, is open to every room)
ALLOWED = {
    "method": set(),
    "data": set(),
    "models": {"method", "data"},
    "embedded": {"data", "models", "method"},
    "compare": {"method", "data", "models"},
    "pipeline": set(),
    "stages": {"method", "data", "models", "embedded", "compare", "pipeline"},
    "paper": {"method", "data", "models", "compare", "pipeline"},
    "cli": {"method", "data", "models", "embedded", "compare", "pipeline", "stages", "paper"},
}
# method/ is model-agnostic: torch (and accelerate for the distributed loop), no transformers, no other kit room


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules_of(room: str):
    for path in sorted((PACKAGE / room).glob("*.py")):
        yield path, imported_modules(path.read_text())


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_rooms_import_only_downhill(room):
    for path, modules in modules_of(room):
        for module in modules:
            other = room_of(module)
            assert other in ALLOWED[room] | {room, "io_utils", "cpu_pins"}, f"{path.relative_to(ROOT)} imports {module}"


def test_method_imports_no_model_library():
    for path in sorted((PACKAGE / "method").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top == "cacovid_lib":
                    assert name == "cacovid_lib.io_utils" or name.startswith("cacovid_lib.method."), \
                        f"{path.name} imports {name}"
                else:
                    assert top not in {"transformers", "pandas", "matplotlib"}, f"{path.name} imports {name}"


def test_the_library_rooms_import_no_pipeline_stage_or_tool():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name in {"pipeline", "stages", "paper", "cli"}:
            continue
        assert not any(room_of(m) in {"pipeline", "stages", "paper", "cli"} for m in imported_modules(path.read_text())), path


def test_the_import_walk_sees_function_level_and_package_imports():
    source = "from cacovid_lib.compare import baselines\ndef f():\n    from cacovid_lib.method.selection import select_tokens\n"
    assert imported_modules(source) == {"cacovid_lib.compare.baselines", "cacovid_lib.method.selection"}
    files = {p.relative_to(ROOT).as_posix() for p in transitive_files(source)}
    assert {"cacovid_lib/compare/baselines.py", "cacovid_lib/method/selection.py", "cacovid_lib/io_utils.py"} <= files


STAGES = dvc_stages()  # the pipeline's and the extra stages


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_declares_the_code_it_runs_and_not_the_whole_package(stage):
    deps = [str(d) for d in STAGES[stage]["deps"]]
    assert "cacovid_lib" not in deps and "cacovid_lib/" not in deps, f"{stage} depends on the whole package"
    notebook = next(d for d in deps if d.endswith(".ipynb"))
    missing = [d for d in stage_code_deps(notebook) if d not in deps]
    assert not missing, f"dvc.yaml stage {stage} misses code deps {missing} (python -m cacovid_lib.pipeline.code_deps)"
    stale = [d for d in deps if d.startswith("cacovid_lib/") and d not in stage_code_deps(notebook)]
    assert not stale, f"dvc.yaml stage {stage} declares code it does not run: {stale}"


def test_the_stages_after_policy_training_read_every_seeds_policy():
    seeds = yaml.safe_load((ROOT / "params.yaml").read_text())["policy"]["seeds"]
    for stage in ("evaluate_policy", "policy_upper_bound", "benchmark", "audit"):  # the ablations train their own
        policies = sorted(d for d in STAGES[stage]["deps"] if str(d).startswith("models/policy"))
        assert policies == sorted(f"models/policy/seed_{s}" for s in seeds), stage


def test_the_world_and_the_video_llm_do_not_run_the_comparison_harness():
    for stage in ("build_world", "train_vlm"):
        notebook = next(d for d in STAGES[stage]["deps"] if str(d).endswith(".ipynb"))
        assert not [d for d in stage_code_deps(notebook) if d.startswith("cacovid_lib/compare/")], stage


def notebook_code_lines(twin: Path) -> int:
    """Lines of code in a notebook's jupytext twin: blank lines, comments and markdown cells not counted."""
    import jupytext

    nb = jupytext.read(twin)
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("twin", sorted((ROOT / "notebooks").rglob("*.py")), ids=lambda p: p.stem)
def test_notebooks_are_thin(twin):
    assert notebook_code_lines(twin) <= 60, f"{twin.name}: {notebook_code_lines(twin)} lines of code (at most 60)"


def test_the_code_line_count_skips_markdown_comments_and_blank_lines(tmp_path):
    twin = tmp_path / "nb.py"
    twin.write_text("# %% [markdown]\n# prose\n\n# %%\nx = 1  # a comment after code counts\n# a comment\n\ny = 2\n")
    assert notebook_code_lines(twin) == 2
