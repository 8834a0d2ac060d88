"""The library calls behind notebooks 02, 03, 05 and 12: vlm.json and blind_filter.json are flat and hold the table's
numbers, and the report's headline reads the flat metrics files (a missing one is one line); 13's seed spread."""
import json

import numpy as np
import pandas as pd
import pytest

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.cli.blind_filter import blind_filter_metrics
from cacovid_lib.stages.report import headline
from cacovid_lib.stages.video_llm_evaluation import keep_rules, video_llm_metrics


def test_vlm_metrics_are_flat_with_one_key_per_question_type():
    assert list(keep_rules([0.5, 0.25], seed=0)) == ["all tokens", "no video (blind)", "random 50%", "random 25%"]
    table = pd.DataFrame({"all tokens": [0.5, 0.25, 0.41666], "no video (blind)": [0.25, 0.0, 0.125],
                          "random 25%": [0.3, 0.2, 0.26]}, index=["colour_of_shape", "which_object", "overall"])
    metrics = video_llm_metrics(table, num_test=24, random_keep_ratios=[0.25])
    assert metrics == {"accuracy_full": 0.4167, "accuracy_blind": 0.125, "num_test": 24, "accuracy_random_0.25": 0.26,
                       "accuracy_full_colour_of_shape": 0.5, "accuracy_full_which_object": 0.25}


def test_blind_filter_metrics_count_what_was_dropped():
    assert blind_filter_metrics(64, 51) == {"num_train": 64, "num_kept": 51, "share_dropped": 0.2031}


def _metrics(folder, margin):
    (folder / "metrics").mkdir()
    files = {"vlm": {"accuracy_full": 0.9, "accuracy_blind": 0.3}, "policy": {"imp_ratio": 0.5},
             "benchmark": {"cacovid_accuracy_at_0.10": 0.8, "cacovid_share_of_upper_bound_at_0.10": 0.889,
                           "cacovid_margin_at_0.10": margin, "best_baseline_at_0.10": "DivPrune"},
             "efficiency": {"cacovid_selection_share_of_full_prefill": 0.05, "cacovid_faster_than_divprune": True,
                            "cacovid_selection_ms": 0.5, "full_prefill_ms": 10.0, "divprune_selection_ms": 2.0}}
    for name, metrics in files.items():
        (folder / "metrics" / f"{name}.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("margin, verdict", [(0.02, ": ahead of every baseline"), (-0.01, "**not** ahead")])
def test_the_headline_reads_the_flat_metrics(tmp_path, margin, verdict):
    _metrics(tmp_path, margin)
    lines = headline(tmp_path)
    assert lines[0] == "- Small video LLM, test split: 0.900 with all tokens, 0.300 without the video."
    assert lines[1].startswith("- At 10% retention CaCoVID scores 0.800 (88.9% of all tokens)") and verdict in lines[1]
    assert f"margin {margin:+.3f}" in lines[1] and not any("5% retention" in line for line in lines)
    assert "0.50 ms = 5% of the all-token prefill (10.00 ms), below DivPrune's 2.00 ms" in lines[2]
    (tmp_path / "metrics" / "policy.json").unlink()
    with pytest.raises(KitInputError, match="policy.json: not found"):
        headline(tmp_path)


def test_oracle_keeps_name_the_asked_objects_and_every_object(test_split):
    import numpy as np

    from cacovid_lib.data.schema import asked_objects
    from cacovid_lib.stages.video_llm_evaluation import oracle_keeps

    keeps = oracle_keeps(test_split)
    labels = test_split.object_labels[test_split.video_of_item].reshape(len(test_split), -1)
    assert keeps["asked objects only"].any(1).all()  # every question of the original world asks about one object
    for row, item, asked in zip(labels, test_split.items, keeps["asked objects only"]):
        assert set(row[asked]) == set(asked_objects(item))
    assert (keeps["objects only"] == (labels >= 0)).all() and (keeps["asked objects only"] <= keeps["objects only"]).all()
    assert "asked objects only" in keep_rules([0.5], seed=0, split=test_split)


def test_seed_spread_metrics_are_mean_sd_min_max_over_the_seeds():
    from cacovid_lib.stages.video_llm_seeds import spread_metrics

    table = pd.DataFrame({"seed": [0, 1, 2], "accuracy_full": [0.9, 0.8, 0.4], "accuracy_blind": [0.25, 0.25, 0.25]})
    out = spread_metrics(table)
    assert out["num_seeds"] == 3 and out["seeds"] == "0 1 2"
    assert out["accuracy_full_mean"] == 0.7 and out["accuracy_full_sd"] == round(float(np.std([0.9, 0.8, 0.4], ddof=1)), 4)
    assert (out["accuracy_full_min"], out["accuracy_full_max"]) == (0.4, 0.9)
    assert out["accuracy_blind_sd"] == 0.0 and "accuracy_random_0.1_mean" not in out  # only the columns it has
