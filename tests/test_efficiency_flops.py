"""Prefill FLOPs per method (compare/efficiency.py): in-LLM pruning counts K full layers and L - K reduced ones,
CaCoVID its policy layer over the full prompt, the attention-scored methods their scoring; the accounting matches
what the registry's rules do; the accuracy-against-FLOPs table, the equal-FLOPs interpolation, the figure; and the
CPU peak of live tensor memory."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from cacovid_lib.compare import registry
from cacovid_lib.compare.baselines import token_budget
from cacovid_lib.compare.benchmark import Run, accuracy_flops_table, equal_flops_comparison, main_table
from cacovid_lib.compare.efficiency import (METHOD_PREFILL_WORK, QWEN2_7B, LLMShape, allocated_peak_mb, kept_video_tokens,
                                            llm_shape_of, method_prefill_flops, method_prefill_share, prefill_flops,
                                            scoring_flops, selection_prefill_flops)
from cacovid_lib.compare.keep import Selection
from cacovid_lib.io_utils import KitInputError

SMALL = LLMShape(layers=6, hidden=128, intermediate=384, heads=8, kv_heads=4)
N, TEXT = 288, 21


def layer(shape, n):
    return prefill_flops(shape, n, layers=1)


@pytest.mark.parametrize("fastv_layer", [0, 1, 3])
def test_pruning_inside_the_llm_runs_k_full_layers_and_the_rest_reduced(fastv_layer):
    kept = token_budget(N, 0.1) + TEXT
    k = fastv_layer + 1
    expected = k * layer(SMALL, N + TEXT) + (SMALL.layers - k) * layer(SMALL, kept)
    assert method_prefill_flops("fastv", SMALL, N, TEXT, 0.1, fastv_layer) == pytest.approx(expected, rel=1e-12)
    sel = Selection(torch.arange(N)[None] < token_budget(N, 0.1), prune_after_layer=fastv_layer)
    assert selection_prefill_flops(SMALL, N, TEXT, sel) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(KitInputError, match="fastv_layer"):
        method_prefill_flops("fastv", SMALL, N, TEXT, 0.1, SMALL.layers)


def test_fastv_at_7b_is_two_full_layers_of_28_and_cacovid_one_policy_layer():
    # the attention term makes the share not exactly 2/28 + 26/28 rho; within 2% of it at 10%
    fastv = method_prefill_share("fastv", QWEN2_7B, 6272, 128, 0.1, 1)
    ours = method_prefill_share("cacovid", QWEN2_7B, 6272, 128, 0.1, 1)
    assert fastv == pytest.approx(2 / 28 + 26 / 28 * 0.1, rel=0.02) and ours == pytest.approx(1 / 28 + 0.1, rel=0.02)
    assert ours < fastv


def test_cacovid_is_every_layer_reduced_plus_one_full_layer_and_the_release_rule_costs_the_same():
    kept = token_budget(N, 0.25) + TEXT
    expected = SMALL.layers * layer(SMALL, kept) + layer(SMALL, N + TEXT)
    for key in ("cacovid", "cacovid_release_rule"):
        assert method_prefill_flops(key, SMALL, N, TEXT, 0.25, 0) == pytest.approx(expected, rel=1e-12)
    sel = Selection(torch.arange(N)[None] < token_budget(N, 0.25))  # the prefill alone: no policy
    assert selection_prefill_flops(SMALL, N, TEXT, sel) == pytest.approx(expected - layer(SMALL, N + TEXT), rel=1e-12)


def test_all_tokens_is_share_one_and_pre_llm_methods_cost_the_reduced_llm_and_their_scoring():
    assert method_prefill_share("all", SMALL, N, TEXT, 1.0, 0) == 1.0
    assert method_prefill_share("all", SMALL, N, TEXT, 0.1, 0) == 1.0  # "all" keeps every token whatever the ratio
    kept = kept_video_tokens(N, 0.1) + TEXT
    assert method_prefill_flops("divprune", SMALL, N, TEXT, 0.1, 0) == pytest.approx(SMALL.layers * layer(SMALL, kept))
    for key in ("fastv_input", "temporal_merge", "prunevid", "framefusion"):
        for fastv_layer in (0, 2):
            expected = SMALL.layers * layer(SMALL, kept) + scoring_flops(SMALL, N + TEXT, fastv_layer)
            assert method_prefill_flops(key, SMALL, N, TEXT, 0.1, fastv_layer) == pytest.approx(expected), key
    # scoring at layer j: j full layers, then the keys and one query row of layer j (less than a layer)
    assert 0 < scoring_flops(SMALL, N + TEXT, 0) < 0.2 * layer(SMALL, N + TEXT)
    assert layer(SMALL, N + TEXT) < scoring_flops(SMALL, N + TEXT, 1) < 1.2 * layer(SMALL, N + TEXT)
    assert all(kept_video_tokens(n, r) == token_budget(n, r) for n in (36, 288, 6272) for r in (0.01, 0.05, 0.1, 0.3, 1.0))
    with pytest.raises(KitInputError, match="no prefill accounting"):
        method_prefill_flops("nope", SMALL, N, TEXT, 0.1, 0)


def test_the_accounting_matches_what_each_registered_rule_does():
    """Every registered method has an entry; the ones that read the LLM's attention (registry._llm_scores) are the
    scored or the in-LLM ones; the ones whose Selection sets prune_after_layer are the in-LLM ones; the trained one
    runs a policy. Rules run on a stub context: the shared score functions record whether they were read."""
    assert {m.key for m in registry.METHODS} <= set(METHOD_PREFILL_WORK)
    read = []
    shared = {"llm_attention": lambda idx, v: read.append("llm") or torch.rand(len(idx), v.shape[1] - 1),
              "vision_attention": lambda idx, v: torch.rand(len(idx), v.shape[1] - 1)}
    ctx = registry.MethodContext(vlm=SimpleNamespace(grid=(4, 3, 3)), items=[{}], shared=shared)
    video = torch.randn(1, 4 * 3 * 3 + 1, 16)
    for m in registry.compressing_methods():
        work = METHOD_PREFILL_WORK[m.key]
        assert (work.policy_layers > 0) == m.trained, m.key
        if m.trained:
            continue
        read.clear()
        sel = registry.build(m.key, ctx, 0.25, registry.MethodSettings(fastv_layer=0))(np.array([0]), video)
        assert (sel.prune_after_layer is not None) == work.pruned_inside, m.key
        assert bool(read) == (work.llm_scoring or work.pruned_inside), m.key
        assert int(sel.keeps.sum()) == token_budget(36, 0.25), m.key  # the count the FLOPs assume


def fake_main():
    split = SimpleNamespace(items=[{"question_type": "a"}] * 4)
    runs = [Run("All tokens", "all", 1.0, np.ones(4, bool))]
    for r, (a, b) in {0.25: ([1, 1, 1, 0], [1, 1, 0, 1]), 0.1: ([1, 1, 0, 0], [1, 0, 0, 0])}.items():
        runs += [Run("CaCoVID", "cacovid", r, np.array(a, bool), "seed_0"), Run("CaCoVID", "cacovid", r, np.array(b, bool), "seed_1"),
                 Run("FastV", "fastv", r, np.array(b, bool)), Run("DivPrune", "divprune", r, np.array(a, bool))]
    return main_table(split, runs, resamples=50)


def test_accuracy_flops_table_has_one_row_per_method_and_ratio_with_both_shapes():
    table = accuracy_flops_table(fake_main(), SMALL, N, TEXT, fastv_layer=0)
    assert len(table) == 1 + 3 * 2  # the per-seed rows are left out
    assert list(table.columns) == ["method", "key", "retention", "average", "ci_low", "ci_high", "sd", "embedded_gflops",
                                   "embedded_share", "llava_ov_7b_tflops", "llava_ov_7b_share"]
    full = table.set_index("method").loc["All tokens"]
    assert full["embedded_share"] == 1.0 and full["llava_ov_7b_share"] == 1.0
    fastv = table[(table["method"] == "FastV") & (table["retention"] == 0.1)].iloc[0]
    assert fastv["embedded_share"] == pytest.approx(method_prefill_share("fastv", SMALL, N, TEXT, 0.1, 0))
    assert fastv["llava_ov_7b_share"] == pytest.approx(method_prefill_share("fastv", QWEN2_7B, 32 * 196, 128, 0.1, 1))
    ours = table[(table["method"] == "CaCoVID") & (table["retention"] == 0.1)].iloc[0]
    assert ours["average"] == 0.375 and ours["sd"] > 0


def test_equal_flops_interpolates_within_the_measured_range_only():
    table = pd.DataFrame({"method": ["CaCoVID", "CaCoVID", "FastV", "FastV", "FastV"], "retention": [0.1, 0.25, 0.25, 0.1, 0.05],
                          "average": [0.6, 0.8, 0.9, 0.7, 0.5], "embedded_share": [0.2, 0.4, 0.5, 0.3, 0.1]})
    out = equal_flops_comparison(table)
    assert list(out["retention"]) == [0.25, 0.1, 0.05]
    assert out.loc[1, "cacovid_accuracy_at_equal_flops"] == pytest.approx(0.7) and out.loc[1, "difference"] == pytest.approx(0.0)
    assert out.loc[[0, 2], "cacovid_accuracy_at_equal_flops"].isna().all() and out.loc[[0, 2], "difference"].isna().all()
    assert out.loc[1, "fastv_accuracy"] == 0.7
    at_edge = equal_flops_comparison(table.assign(embedded_share=[0.2, 0.4, 0.4, 0.3, 0.2]))
    assert at_edge["cacovid_accuracy_at_equal_flops"].tolist() == pytest.approx([0.8, 0.7, 0.6])
    with pytest.raises(KitInputError, match="no rows of 'Nope'"):
        equal_flops_comparison(table, against="Nope")


def test_the_figure_has_two_panels_with_a_line_per_method():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cacovid_lib.stages.figures import accuracy_flops_figure

    fig = accuracy_flops_figure(accuracy_flops_table(fake_main(), SMALL, N, TEXT))
    left, right = fig.axes
    for ax, column in ((left, "embedded_share"), (right, "llava_ov_7b_share")):
        assert len(ax.lines) == 3 + 1  # CaCoVID, FastV, DivPrune, and the all-token line
        ours = next(line for line in ax.lines if line.get_label() == "CaCoVID")
        assert ours.get_linewidth() > max(line.get_linewidth() for line in ax.lines if line.get_label() == "FastV")
        assert list(ours.get_xdata()) == sorted(ours.get_xdata())
    assert max(left.lines[1].get_xdata()) != max(right.lines[1].get_xdata())  # the two shapes cost differently
    plt.close(fig)


def test_llm_shape_of_reads_the_language_models_config():
    from transformers import Qwen2Config

    cfg = Qwen2Config(vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2)
    vlm = SimpleNamespace(language_model=SimpleNamespace(config=cfg))
    assert llm_shape_of(vlm) == LLMShape(layers=3, hidden=64, intermediate=96, heads=4, kv_heads=2, vocab=50)


def test_cpu_peak_sees_tensor_memory_that_was_freed_again():
    def fn():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = a * 2  # 8 MiB live
        del a
        c = torch.ones(2048, 1024)  # 4 + 8 = 12 MiB live: the peak
        return float(b.sum() + c.sum())

    fn()
    assert allocated_peak_mb(fn, "cpu") == pytest.approx(12.0, abs=0.1)
