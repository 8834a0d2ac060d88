"""The CPU pins make a training run's weights the same whichever code path the machine would choose.

A tiny model (a convolution, layer norm, a large reduction, AdamW) is trained for a few steps in fresh processes, and
numpy's transcendental functions are applied to a fixed array. Each perturbation sends one library down another code
path, as another CPU would (another torch kernel level, MKL branch, thread count, oneDNN ISA, numpy SIMD target):
without the pins the hash changes, which shows the toy sees that library; with the pins applied on top, the hash
equals the pinned run's, all perturbations at once, so removing a pin from cpu_pins fails the test. Two perturbations reach a path only an AVX-512
CPU has; on a CPU without AVX-512 their "sees" case is skipped. MKL_DYNAMIC / OMP_DYNAMIC (no fewer threads under
load) have no deterministic perturbation and are not exercised here.
"""
import json
import os
import subprocess
import sys

import pytest

from cacovid_lib.cpu_pins import FIXED_PINS, apply_pins, pinned_environment

from conftest import ROOT

TOY = r"""
import hashlib, sys
if sys.argv[1] == "pinned":
    from cacovid_lib.cpu_pins import apply_pins
    apply_pins(2)
import numpy as np
import torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 4, stride=4), torch.nn.GELU(), torch.nn.Flatten(),
                          torch.nn.LayerNorm(16 * 8 * 8), torch.nn.Linear(16 * 8 * 8, 64), torch.nn.Softmax(-1))
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
x, y, big = torch.randn(32, 3, 32, 32), torch.randn(32, 64), torch.randn(300_000)
for _ in range(8):
    loss = ((net(x) - y) ** 2).mean() + 1e-3 * (big * net[4].weight.sum()).sum()
    opt.zero_grad(); loss.backward(); opt.step()
digest = hashlib.sha256()
for t in net.state_dict().values():
    digest.update(t.numpy().tobytes())
x = np.linspace(-3, 3, 10001)
for f in (np.sin, np.tanh, np.exp, np.arctan):
    digest.update(f(x).tobytes())
    digest.update(f(x.astype(np.float32)).tobytes())
print(digest.hexdigest())
"""

# per pin: (an environment away from the pin, held by the pins; an environment away from the machine's own choice,
# which the unpinned toy must see; whether that second one needs an AVX-512 CPU to be another path)
PERTURBATIONS = {
    "torch kernel level": ({"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "default"}, False),
    "MKL branch": ({"MKL_CBWR": "COMPATIBLE"}, {"MKL_CBWR": "COMPATIBLE"}, False),
    "thread count": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                     False),
    "oneDNN ISA": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
    "numpy SIMD": ({"NPY_DISABLE_CPU_FEATURES": ""}, {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
                   True),
}


def _has_avx512() -> bool:
    try:
        return " avx512f" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def train_toy(pinned: bool, extra_env: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in pinned_environment()}  # the suite's own pins removed
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", TOY, "pinned" if pinned else "unpinned"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _every(which: int) -> dict:
    """Every perturbation's environment at once: 0 the ones away from the pins, 1 the ones away from the machine."""
    return {k: v for case in PERTURBATIONS.values() for k, v in case[which].items()}


@pytest.fixture(scope="module")
def reference():
    return {"pinned": train_toy(True, {}), "unpinned": train_toy(False, {})}


def test_pins_hold_the_results_on_every_other_code_path_at_once(reference):
    # with every pin, every perturbation together changes nothing, so removing any one pin fails here
    assert train_toy(True, _every(0)) == reference["pinned"], "the pins do not hold against the perturbations"
    assert train_toy(True, _every(1)) == reference["pinned"], "the pins do not hold against the perturbations"


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_the_toy_sees_each_perturbed_library(reference, name):
    _, seen, needs_avx512 = PERTURBATIONS[name]
    if needs_avx512 and not _has_avx512():
        pytest.skip(f"the {name} is another path only on an AVX-512 CPU")
    assert train_toy(False, seen) != reference["unpinned"], f"the toy does not see the {name}"


def test_the_suite_runs_pinned():
    import torch

    assert torch.backends.cpu.get_cpu_capability() == FIXED_PINS["ATEN_CPU_CAPABILITY"].upper()
    assert all(os.environ.get(k) == v for k, v in pinned_environment().items())


def test_apply_pins_refuses_once_torch_is_loaded_with_other_values(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    with pytest.raises(RuntimeError, match="already imported"):
        apply_pins(2)


def test_thread_count_is_validated():
    with pytest.raises(ValueError, match="runtime.threads"):
        pinned_environment(0)


def test_the_stage_runner_records_the_runtime_in_the_stages_metrics(tmp_path):
    from cacovid_lib.pipeline.stage import record_runtime, stage_metrics

    assert stage_metrics(ROOT / "dvc.yaml", "evaluate_vlm") == [str(ROOT / "reports/metrics/vlm.json")]
    path = tmp_path / "m.json"
    path.write_text('{"accuracy": 0.5}')
    record_runtime([str(path)])
    metrics = json.loads(path.read_text())
    assert metrics["accuracy"] == 0.5 and metrics["runtime_pins_in_effect"] is True
    assert metrics["runtime_torch_cpu_capability"] == "AVX2" and metrics["runtime_pins_MKL_CBWR"] == "AVX2,STRICT"
    assert metrics["runtime_cpu"] and all(not isinstance(v, (dict, list)) for v in metrics.values())
