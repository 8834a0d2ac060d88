"""Ablation runs are named by their overrides, the base recipe is policy.train with the ablations' steps and is
trained once for every ablation, and each ablation's table reads the run its variant names."""
import dataclasses

import pandas as pd

from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.stages.ablations import ablation_runs, ablation_tables, ablations_markdown, base_recipe, run_name

VARIANTS = {"sampler": {"grouped": {}, "independent": {"sampler": "independent"}},
            "sampling_modes": {"token": {"sampling_modes": ["token"]}, "all": {}},
            "group_size": {"2": {}, "4": {"group_size": 4}}}


def test_each_distinct_run_once_and_the_base_shared():
    runs = ablation_runs(VARIANTS)
    assert list(runs) == ["base", "sampler=independent", "sampling_modes=token", "group_size=4"]
    assert run_name({"sampling_modes": ["token", "frame"], "group_size": 1}) == "group_size=1,sampling_modes=token+frame"


def test_the_base_recipe_is_the_main_policys_with_the_ablation_steps():
    main = PolicyTrainConfig(steps=1500, lr=0.003, num_generations=16, seed=4)
    base = base_recipe(main, steps=150)
    assert base.steps == 150 and dataclasses.replace(base, steps=1500) == main


def test_each_ablation_table_reads_the_run_its_variant_names():
    results = {name: {"val_accuracy_at_0.10": i / 10, "train_s": 1.0} for i, name in enumerate(ablation_runs(VARIANTS))}
    tables = ablation_tables(VARIANTS, results)
    assert list(tables) == list(VARIANTS)
    assert tables["sampler"]["val_accuracy_at_0.10"].to_dict() == {"grouped": 0.0, "independent": 0.1}
    assert tables["group_size"]["val_accuracy_at_0.10"].to_dict() == {"2": 0.0, "4": 0.3}  # "2" is the shared base
    assert tables["sampling_modes"].index.name == "sampling_modes"
    text = ablations_markdown(tables, base_recipe(PolicyTrainConfig(num_generations=16), 150), num_train=400)
    assert "150 steps, G = 16" in text and "### group_size" in text and isinstance(tables["sampler"], pd.DataFrame)
