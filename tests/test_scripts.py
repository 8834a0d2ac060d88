"""Each tool kept in scripts/ answers `--help` with its usage (scripts/gpu_profile.py runs in test_gpu_profile.py)."""
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = ["stage_times.py", "selection_cost_by_depth.py", "diagnose_policy_rl.py", "diagnosis_summary.py", "pin_cost.py",
           "sync_notebooks.py", "gpu_smoke.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_prints_its_usage(script):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: "), done.stdout[:500]


def test_every_script_is_tested():
    assert sorted(p.name for p in (ROOT / "scripts").glob("*.py")) == sorted([*SCRIPTS, "gpu_profile.py"])
