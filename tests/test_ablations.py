"""Ablation runs are named by their overrides, and the base recipe is trained once for every ablation."""
from cacovid_lib.pipeline.ablations import ablation_runs, run_name


def test_each_distinct_run_once_and_the_base_shared():
    variants = {"sampler": {"grouped": {}, "independent": {"sampler": "independent"}},
                "sampling_modes": {"token": {"sampling_modes": ["token"]}, "all": {}},
                "group_size": {"2": {}, "4": {"group_size": 4}}}
    runs = ablation_runs(variants)
    assert list(runs) == ["base", "sampler=independent", "sampling_modes=token", "group_size=4"]
    assert run_name({"sampling_modes": ["token", "frame"], "group_size": 1}) == "group_size=1,sampling_modes=token+frame"
