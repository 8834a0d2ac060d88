"""Every tensor that compare/ and method/ create says where it lives: a constructor without `device=` makes a CPU
tensor, which crashes (or silently copies) once it meets a GPU tensor (VisionZip wrote a CPU `torch.arange` into
its GPU assignment vector). A tensor put on the CPU on purpose (`device="cpu"`: Python-side bookkeeping, host-read
counts) says why in a comment, on its statement or in the comment lines just above it. A code check, since the
suite has no GPU to meet."""
import ast
import io
import tokenize

import pytest
from conftest import ROOT

CONSTRUCTORS = {"arange", "zeros", "ones", "full", "tensor", "as_tensor", "empty", "eye", "linspace", "logspace",
                "randperm", "rand", "randn", "randint", "empty_strided", "scalar_tensor", "tril_indices",
                "triu_indices", "range"}
FILES = sorted(p for room in ("compare", "method") for p in (ROOT / "cacovid_lib" / room).glob("*.py"))


def _within(stmt: ast.stmt):
    """The nodes of `stmt` outside the statements it holds (a for/if/with/try's header, not its body)."""
    todo = list(ast.iter_child_nodes(stmt))
    while todo:
        node = todo.pop()
        if not isinstance(node, ast.stmt):
            yield node
            todo.extend(ast.iter_child_nodes(node))


def _constructor_calls(tree: ast.AST):
    """(call, its statement) for each torch.<constructor>(...) call, each once."""
    for stmt in ast.walk(tree):
        if not isinstance(stmt, ast.stmt):
            continue
        compound = any(isinstance(v, list) and v and isinstance(v[0], ast.stmt) for v in vars(stmt).values())
        for node in _within(stmt):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CONSTRUCTORS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                yield node, (node if compound else stmt)  # a for/if/with header: the call's own lines


def constructors_without_device(source: str) -> list[str]:
    """'line: torch.name' of each call of a torch tensor constructor without a device= keyword."""
    return [f"{call.lineno}: torch.{call.func.attr}" for call, _ in _constructor_calls(ast.parse(source))
            if not any(k.arg == "device" for k in call.keywords)]


def cpu_tensors_without_reason(source: str) -> list[str]:
    """'line: torch.name' of each constructor with device="cpu" (or torch.device("cpu")) that no comment explains:
    none on its statement's lines, nor in the comment-only lines directly above the statement."""
    comments, comment_only = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments.add(token.start[0])
            if not token.line[:token.start[1]].strip():
                comment_only.add(token.start[0])
    missing = []
    for call, stmt in _constructor_calls(ast.parse(source)):
        device = next((k.value for k in call.keywords if k.arg == "device"), None)
        if not (ast.unparse(device) in ("'cpu'", "torch.device('cpu')") if device is not None else False):
            continue
        lines = set(range(stmt.lineno, stmt.end_lineno + 1))
        above = stmt.lineno - 1
        while above in comment_only:
            lines.add(above)
            above -= 1
        if not lines & comments:
            missing.append(f"{call.lineno}: torch.{call.func.attr}")
    return missing


def test_the_check_sees_a_missing_device_across_lines():
    source = "x = torch.arange(3)\ny = torch.zeros(\n    2, dtype=torch.bool,\n    device=x.device)\nz = torch.tensor(1.0)\n"
    assert constructors_without_device(source) == ["1: torch.arange", "5: torch.tensor"]
    nested = "try:\n    x = 1\nexcept ValueError:\n    y = torch.ones(2)\nfor i in torch.arange(2):\n    z = torch.zeros(1)\n"
    assert sorted(constructors_without_device(nested)) == ["4: torch.ones", "5: torch.arange", "6: torch.zeros"]  # once each


def test_the_check_sees_a_cpu_tensor_without_a_reason():
    source = ("a = torch.zeros(2, device='cpu')  # the loop below reads it on the host\n"
              "# counts for split_budget, which works on the CPU\n"
              "b = torch.ones(\n    3, device=torch.device('cpu'))\n"
              "c = torch.arange(4, device='cpu')\n"
              "for i in torch.arange(5, device='cpu'):  # a Python loop over it\n    d = torch.full((2,), 1, device='cpu')\n"
              "e = torch.empty(1, device=x.device)\n")
    assert cpu_tensors_without_reason(source) == ["5: torch.arange", "7: torch.full"]


def _ids(path):
    return path.relative_to(ROOT / "cacovid_lib").as_posix()


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_every_tensor_constructor_names_its_device(path):
    missing = constructors_without_device(path.read_text())
    assert not missing, f"{path.name}: tensors created without device=: {missing}"


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_every_tensor_put_on_the_cpu_says_why(path):
    missing = cpu_tensors_without_reason(path.read_text())
    assert not missing, f"{path.name}: device='cpu' without a comment saying why: {missing}"


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_torch_constructors_are_only_called_as_torch_dot_name(path):
    """The checks above read `torch.<name>(...)`: an alias (`import torch as th`, `from torch import zeros`) would
    hide a constructor from them."""
    tree = ast.parse(path.read_text())
    aliased = [f"{n.lineno}: import torch as {a.asname}" for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names if a.name == "torch" and a.asname not in (None, "torch")]
    aliased += [f"{n.lineno}: from torch import {a.name}" for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module == "torch" for a in n.names if a.name in CONSTRUCTORS]
    assert not aliased, f"{path.name}: {aliased}"
