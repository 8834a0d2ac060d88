"""Every stage's metrics file is one flat level of keys, named by the registry's keys, with intervals beside each
accuracy; the builders read the tables the notebooks show."""
import json

import numpy as np
import pandas as pd
import pytest

from cacovid_lib.compare import registry
from cacovid_lib.compare.cacovid import chosen_rule
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.selection import SelectionRule
from cacovid_lib.pipeline.metrics import (ablation_metrics, audit_metrics, benchmark_metrics, efficiency_metrics, flat,
                                          metric_name, policy_metrics, write_metrics)


def test_metric_names_are_the_registry_keys():
    for m in registry.compressing_methods():
        assert metric_name(m.name) == m.key, m.name
    assert metric_name("token+frame+content") == "token_frame_content" and metric_name("1.0") == "1.0"


def test_flat_joins_nested_keys_rounds_and_refuses_lists(tmp_path):
    out = flat({"accuracy": {"full": np.float32(0.123456), "by_type": {"a": 1}}, "ok": np.bool_(True), "nan": float("nan")})
    assert out == {"accuracy_full": 0.1235, "accuracy_by_type_a": 1, "ok": True, "nan": None}
    with pytest.raises(KitInputError, match="metrics x: list"):
        flat({"x": [1, 2]})
    write_metrics(tmp_path / "m.json", {"a": {"b": 0.5}})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a_b": 0.5}


def main_table(seeds=False):
    rows = [("All tokens", 1.0, 0.9), ("CaCoVID", 0.1, 0.8), ("DivPrune", 0.1, 0.85), ("FastV (input)", 0.1, 0.7),
            ("CaCoVID", 0.25, 0.88), ("DivPrune", 0.25, 0.86)]
    table = pd.DataFrame([{"retention": r, "method": m, "average": a, "ci_low": a - 0.05, "ci_high": a + 0.05,
                           "share_of_upper_bound": a / 0.9} for m, r, a in rows])
    if seeds:
        table["seed"] = ["", "mean", "", "", "mean", ""]
        table["sd"] = [np.nan, 0.02, np.nan, np.nan, 0.01, np.nan]
        seed_rows = table.iloc[[1, 1]].assign(seed=["seed_0", "seed_1"], average=[0.1, 0.2], sd=np.nan)
        table = pd.concat([table, seed_rows], ignore_index=True)
    return table


def test_benchmark_metrics_are_flat_with_intervals_margin_and_best_baseline():
    m = benchmark_metrics(main_table(), num_test=100)
    assert all(not isinstance(v, (dict, list)) for v in m.values())
    assert m["accuracy_all_tokens"] == 0.9 and m["num_test"] == 100
    assert (m["cacovid_accuracy_at_0.10"], m["cacovid_accuracy_at_0.10_ci_low"], m["cacovid_accuracy_at_0.10_ci_high"]) == (0.8, 0.75, 0.85)
    assert m["fastv_input_accuracy_at_0.10"] == 0.7
    assert m["cacovid_margin_at_0.10"] == pytest.approx(-0.05) and m["best_baseline_at_0.10"] == "DivPrune"
    assert "cacovid_accuracy_at_0.25" not in m  # only the headline ratios; the whole sweep is in main.csv
    assert not any(k.endswith("_sd") for k in m)


def test_benchmark_metrics_with_seeds_use_the_mean_row_and_add_its_sd():
    m = benchmark_metrics(main_table(seeds=True), num_test=100)
    assert m["cacovid_accuracy_at_0.10"] == 0.8 and m["cacovid_accuracy_at_0.10_sd"] == 0.02


def test_policy_efficiency_audit_and_ablation_metrics_are_flat():
    table = pd.DataFrame({"cacovid": [0.8], "cacovid_ci_low": [0.7], "cacovid_ci_high": [0.9], "random": [0.5],
                          "random_ci_low": [0.4], "random_ci_high": [0.6]}, index=pd.Index([0.1], name="retention"))
    rule = {"imp_ratio": 0.5, "cap_multiple": None, "frame_floor": 0.5, "frame_sharpness": 3.0, "allocation": "global"}
    pol = policy_metrics(table, {"accuracy": 0.9, "ci_low": 0.85, "ci_high": 0.95}, 100, rule, {"selection_ms": 1.5})
    assert pol["accuracy_at_0.10"] == 0.8 and pol["random_accuracy_at_0.10_ci_high"] == 0.6
    assert pol["accuracy_full_ci_low"] == 0.85 and pol["imp_ratio"] == 0.5 and pol["selection_ms"] == 1.5
    assert pol["cap_multiple"] is None and pol["allocation"] == "global" and chosen_rule(pol) == SelectionRule(**rule)
    eff = pd.DataFrame({"method": ["All tokens", "CaCoVID", "DivPrune"], "selection_ms": [0.0, 1.0, 2.0],
                        "prefill_ms": [10.0, 3.0, 3.0], "selection_share_of_full_prefill": [0.0, 0.1, 0.2]})
    flops = pd.DataFrame({"retention": [1.0, 0.1], "speedup_with_policy": [1.0, 7.5]})
    e = efficiency_metrics(eff, flops, 0.1)
    assert e == {"retention": 0.1, "full_prefill_ms": 10.0, "cacovid_selection_ms": 1.0, "divprune_selection_ms": 2.0,
                 "cacovid_selection_share_of_full_prefill": 0.1, "cacovid_faster_than_divprune": True,
                 "llava_ov_7b_speedup_at_0.10": 7.5}
    audit = pd.DataFrame({"spearman_with_contribution": [1.0, 0.2]}, index=pd.Index(["contribution", "policy"], name="score"))
    assert audit_metrics(audit, 3) == {"num_items": 3, "contribution_spearman_with_contribution": 1.0,
                                       "policy_spearman_with_contribution": 0.2}
    abl = {"sampler": pd.DataFrame({"val_accuracy_at_0.10": [0.5, 0.6]}, index=["grouped rank-band", "independent Bernoulli"])}
    assert ablation_metrics(abl) == {"sampler_grouped_rank_band_val_accuracy_at_0.10": 0.5,
                                     "sampler_independent_bernoulli_val_accuracy_at_0.10": 0.6}
