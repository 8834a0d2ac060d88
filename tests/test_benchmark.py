"""The benchmark library: every keep rule returns a Selection; the sweep scores every registered method at every
ratio (CaCoVID once per policy seed); the main table's averages, intervals, seed rows and order; the efficiency
table; the validation choice of imp_ratio; and finding the policies of several training seeds."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cacovid_lib.compare import benchmark, registry
from cacovid_lib.compare.benchmark import (Run, efficiency_table, main_markdown, main_table, retention_curve, split_context,
                                           summary_rows, sweep)
from cacovid_lib.compare.cacovid import (check_rule_candidates, chosen_rule, policy_folders, policy_keep_rule,
                                         retention_table, rule_search)
from cacovid_lib.compare.evaluation import correct
from cacovid_lib.compare.intervals import bootstrap_interval
from cacovid_lib.compare.keep import Selection, keep_all, keep_none, random_keep_rule
from cacovid_lib.compare.registry import MethodSettings
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.selection import RELEASE_RULE, SelectionRule


@pytest.fixture(scope="module")
def policies(tiny_vlm):
    llm = tiny_vlm.language_model
    return {f"seed_{s}": CompressionPolicy.from_llm(llm, seed=s).eval() for s in (0, 1)}


def test_every_simple_rule_and_the_policy_return_a_selection(tiny_vlm, test_split, embeds, policies):
    idx = np.arange(3)
    batch = embeds[test_split.video_of_item[idx]]
    n = tiny_vlm.num_video_tokens
    rules = {"all": (keep_all, n), "none": (keep_none, 0), "random": (random_keep_rule(0.25), int(0.25 * n)),
             "policy": (policy_keep_rule(tiny_vlm, policies["seed_0"], test_split.items, 0.25), int(0.25 * n))}
    for name, (rule, kept) in rules.items():
        sel = rule(idx, batch)
        assert isinstance(sel, Selection) and sel.keeps.shape == (3, n) and (sel.keeps.sum(1) == kept).all(), name


@pytest.mark.slow
def test_sweep_scores_every_registered_method_and_each_policy_seed(tiny_vlm, test_split, embeds, policies):
    settings = MethodSettings(fastv_layer=0)
    runs = sweep(split_context(tiny_vlm, test_split), test_split, embeds, [0.1], settings, policies)
    names = [m.name for m in registry.compressing_methods()]
    trained = {"CaCoVID", "CaCoVID (release rule)"}  # one run per policy seed
    assert [r.method for r in runs] == ["All tokens"] + [m for m in names for _ in range(2 if m in trained else 1)]
    assert {r.seed for r in runs if r.method in trained} == {"seed_0", "seed_1"}
    assert all(r.seed is None for r in runs if r.method not in trained)
    assert all(r.outcomes.shape == (len(test_split),) and r.outcomes.dtype == bool for r in runs)
    # the sweep's shared scores give what each rule computes on its own
    shared = next(r for r in runs if r.method == "FastV (input)")
    alone = registry.build("fastv_input", split_context(tiny_vlm, test_split), 0.1, settings)
    assert np.array_equal(shared.outcomes, correct(tiny_vlm, test_split, alone, video_embeds=embeds))
    table = main_table(test_split, runs)
    ours = table[(table["method"] == "CaCoVID") & (table["retention"] == 0.1)].set_index("seed")
    assert ours.loc["mean", "average"] == pytest.approx(ours.loc[["seed_0", "seed_1"], "average"].mean())
    assert ours.loc["mean", "sd"] == pytest.approx(ours.loc[["seed_0", "seed_1"], "average"].std())
    assert [m.name for m in registry.compressing_methods(trained=False)] == [n for n in names if n not in trained]  # no policy


def fake_split(types):
    return SimpleNamespace(items=[{"question_type": t} for t in types])


def test_main_table_averages_intervals_share_and_order():
    split = fake_split(["a", "a", "b", "b"])
    runs = [Run("All tokens", "all", 1.0, np.array([1, 1, 1, 0], bool)),
            Run("Random", "random", 0.1, np.array([0, 1, 0, 0], bool)),
            Run("DivPrune", "divprune", 0.1, np.array([1, 1, 0, 1], bool))]
    table = main_table(split, runs, resamples=200)
    assert list(table["method"]) == ["All tokens", "DivPrune", "Random"]  # by retention, then average, best first
    assert list(table.columns) == ["retention", "method", "a", "b", "average", "ci_low", "ci_high", "share_of_upper_bound"]
    div = table.iloc[1]
    assert (div["a"], div["b"], div["average"]) == (1.0, 0.5, 0.75)
    assert div["share_of_upper_bound"] == pytest.approx(1.0)
    # each interval is the paired bootstrap of that run's own outcomes, at the resamples and seed asked
    for run in runs:
        row = table[table["method"] == run.method].iloc[0]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_interval(run.outcomes, 0.95, 200, 0))
    assert list(retention_curve(table).columns) == ["DivPrune", "Random"]
    with pytest.raises(KitInputError, match="one 'All tokens' run"):
        main_table(split, runs[1:])


def test_main_table_with_seeds_has_a_mean_row_with_sd_and_one_row_per_seed():
    split = fake_split(["a"] * 4)
    runs = [Run("All tokens", "all", 1.0, np.ones(4, bool)),
            Run("CaCoVID", "cacovid", 0.1, np.array([1, 1, 0, 0], bool), "seed_0"),
            Run("CaCoVID", "cacovid", 0.1, np.array([1, 1, 1, 1], bool), "seed_1")]
    table = main_table(split, runs, resamples=200)
    ours = table[table["method"] == "CaCoVID"].set_index("seed")
    assert list(ours.index) == ["seed_1", "mean", "seed_0"]  # sorted by average
    assert ours.loc["mean", "average"] == 0.75 and ours.loc["mean", "sd"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert list(summary_rows(table)["seed"]) == ["", "mean"]


def test_the_main_markdown_names_each_methods_paper_and_year():
    runs = [Run("All tokens", "all", 1.0, np.ones(4, bool)), Run("FlashVID", "flashvid", 0.1, np.array([1, 0, 1, 1], bool)),
            Run("Random", "random", 0.1, np.array([0, 1, 0, 0], bool))]
    text = main_markdown(main_table(fake_split(["a"] * 4), runs, resamples=50))
    assert "| 93.0" not in text and "75.0 [" in text  # percent, with the interval
    assert "- **FlashVID** (2026): Fan et al., ICLR 2026 (arXiv 2602.08024)" in text
    assert "**Random**" not in text and "**FastV**" not in text  # no paper for a floor; only the methods in the table


@pytest.mark.slow
def test_efficiency_table_times_every_method_for_one_video(tiny_vlm, test_split, embeds, policies, monkeypatch):
    timed, kept = [], []  # the repeats of each timing; the video tokens each timed prefill keeps
    real_median_ms, real_prefill = benchmark.median_ms, benchmark.prefill
    monkeypatch.setattr(benchmark, "median_ms", lambda fn, repeats: timed.append(repeats) or real_median_ms(fn, repeats))
    monkeypatch.setattr(benchmark, "prefill", lambda vlm, prompt, video, sel: kept.append(int(sel.keeps[0].sum()))
                        or real_prefill(vlm, prompt, video, sel))
    table = efficiency_table(split_context(tiny_vlm, test_split), embeds[test_split.video_of_item[:1]], 0.1,
                             MethodSettings(fastv_layer=0), policies["seed_0"], repeats=1)
    methods = [m.name for m in registry.compressing_methods()]
    assert list(table["method"]) == ["All tokens"] + methods  # one row per method, at the one ratio asked
    assert timed == [1] * (1 + 2 * len(methods))  # the all-token prefill, then each method's selection and prefill
    # the first prefills keep every token; the methods' prefills run on their own selections, which prune (FastV's
    # input keeps every token: it prunes inside the LLM)
    assert kept[0] == tiny_vlm.num_video_tokens and min(kept) < tiny_vlm.num_video_tokens
    assert table.loc[0, "selection_ms"] == 0.0 and table.notna().all().all() and (table["peak_memory_mb"] >= 0).all()
    assert table["total_ms"].tolist() == pytest.approx((table["selection_ms"] + table["prefill_ms"]).tolist(), abs=2e-3)
    share = table["selection_ms"] / table.loc[0, "prefill_ms"]
    assert table["selection_share_of_full_prefill"].tolist() == pytest.approx(share.tolist(), rel=1e-2, abs=2e-3)


@pytest.mark.slow
def test_rule_search_changes_one_field_at_a_time_and_keeps_the_best(tiny_vlm, test_split, embeds, policies):
    candidates = {"imp_ratio": [0.5, 1.0], "cap_multiple": [None], "allocation": ["per_frame", "global"]}
    rule, tried = rule_search(tiny_vlm, policies, test_split, embeds, [0.25, 0.1], candidates)
    assert tried.iloc[0][["imp_ratio", "cap_multiple", "allocation"]].tolist() == [0.5, 1.5, "per_frame"]  # the release first
    assert len(tried) == 4 and tried["chosen"].sum() == 1  # release, imp 1.0, no cap, global: each rule scored once
    assert tried["val_mean"].tolist() == pytest.approx(tried[["val_0.25", "val_0.1"]].mean(axis=1).tolist())
    chosen = tried[tried["chosen"]].iloc[0]
    assert chosen["val_mean"] == tried["val_mean"].max() or chosen["val_mean"] >= tried.iloc[0]["val_mean"]
    assert rule == chosen_rule(chosen.to_dict())
    # a rule's validation accuracy is the mean over the policies of its outcomes
    expected = np.mean([correct(tiny_vlm, test_split, policy_keep_rule(tiny_vlm, p, test_split.items, 0.25, rule),
                                video_embeds=embeds).mean() for p in policies.values()])
    assert chosen["val_0.25"] == pytest.approx(expected)


def test_a_bad_rule_candidate_is_a_one_line_error():
    with pytest.raises(KitInputError, match="cap_multiple"):
        check_rule_candidates({"cap_multiple": [1.5, -1.0]})


@pytest.mark.slow
def test_retention_table_averages_over_policy_seeds_beside_the_release_rule(tiny_vlm, test_split, embeds, policies):
    table, full = retention_table(tiny_vlm, policies, test_split, embeds, [0.25], RELEASE_RULE, seed=0)
    row = table.loc[0.25]
    assert "release_rule" not in table  # the chosen rule is the release's: no second column
    assert row["cacovid"] == pytest.approx((row["cacovid_seed_0"] + row["cacovid_seed_1"]) / 2)
    # the intervals are the bootstrap of the per-question outcomes: CaCoVID's of the share of seeds that got it right
    outcomes = [correct(tiny_vlm, test_split, policy_keep_rule(tiny_vlm, p, test_split.items, 0.25),
                        video_embeds=embeds) for p in policies.values()]
    assert (row["cacovid_ci_low"], row["cacovid_ci_high"]) == pytest.approx(bootstrap_interval(np.mean(outcomes, 0)))
    everything = correct(tiny_vlm, test_split, keep_all, video_embeds=embeds)
    assert (full["ci_low"], full["ci_high"]) == pytest.approx(bootstrap_interval(everything))
    other = SelectionRule(imp_ratio=1.0, cap_multiple=None)
    single, _ = retention_table(tiny_vlm, {"policy": policies["seed_0"]}, test_split, embeds, [0.25], other, seed=0)
    assert "cacovid_sd" not in single and single.loc[0.25, "release_rule"] == row["cacovid_seed_0"]
    assert single.loc[0.25, "cacovid"] == correct(tiny_vlm, test_split, policy_keep_rule(
        tiny_vlm, policies["seed_0"], test_split.items, 0.25, other), video_embeds=embeds).mean()


def test_policy_folders_are_the_seed_subfolders_in_seed_order_or_the_folder(tmp_path):
    for s in (10, 2):
        (tmp_path / "multi" / f"seed_{s}").mkdir(parents=True)
    (tmp_path / "multi" / "seed_x").mkdir()
    assert list(policy_folders(tmp_path / "multi")) == ["seed_2", "seed_10"]
    (tmp_path / "single").mkdir()
    assert policy_folders(tmp_path / "single") == {"single": tmp_path / "single"}
    with pytest.raises(KitInputError, match="policy folder not found"):
        policy_folders(tmp_path / "missing")
