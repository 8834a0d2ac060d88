"""The pins of pyproject.toml and environment.yml agree; .ci/run calls the README's test command."""
import re
import tomllib

import yaml
from conftest import ROOT


def _pins(lines):
    return dict(re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", s).groups() for s in lines if "==" in s)


def test_environment_yml_has_the_same_pins_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_lines) == ours


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^(make test)\b", readme, re.MULTILINE)  # a line of the README's commands block
    assert command, "README.md: no `make test` command line"
    command = command.group(1)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
