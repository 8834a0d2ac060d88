"""The benchmark: every registered method x retention ratio scored on one split, the main table with bootstrap
intervals (and CaCoVID's spread over training seeds), and the efficiency table (selection, prefill, peak memory).

    ctx = split_context(vlm, test)
    runs = sweep(ctx, test, test_embeds, ratios, settings, policies={"seed_0": p0, "seed_1": p1})
    table = main_table(test, runs)                       # one row per method x ratio (+ one per CaCoVID seed)
    costs = efficiency_table(ctx, test_embeds[test.video_of_item[:1]], 0.1, settings, policies, repeats=20)

The methods come from `registry.compressing_methods()`, so a method added there appears here, in the notebook,
in the GPU evaluation CLI and in the scripts under the same display name.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare import registry
from cacovid_lib.compare.efficiency import (QWEN2_7B, LLMShape, allocated_peak_mb, flops_table, llm_shape_of, median_ms,
                                           method_prefill_flops, prefill, prefill_flops, prompt_text_tokens,
                                           selection_prefill_flops)
from cacovid_lib.compare.evaluation import predict
from cacovid_lib.compare.intervals import bootstrap_interval
from cacovid_lib.compare.keep import keep_all
from cacovid_lib.compare.registry import MethodContext, MethodSettings
from cacovid_lib.io_utils import KitInputError

UPPER = "All tokens"


@dataclass
class Run:
    """One scored (method, retention) pair: whether each question of the split was answered correctly."""

    method: str  # registry display name
    key: str  # registry key (metrics names)
    retention: float
    outcomes: np.ndarray  # (num_items,) bool
    seed: str | None = None  # the policy this CaCoVID run used (its folder's name); None for every other method
    keeps: np.ndarray | None = None  # (num_items, N) bool: the kept video tokens (compare.coverage reads them)


def split_context(vlm, split, policy=None) -> MethodContext:
    """The registry's context for a split: its items, and its videos' pixels for the methods that re-run the
    vision tower (VisionZip, and the saliency of FastVID, FlashVID and HoliTom)."""
    def pixels_of(idx):
        return torch.stack([vlm.preprocess(split.frames[v]) for v in split.video_of_item[idx]])  # (B, t, 3, S, S)

    return MethodContext(vlm, split.items, pixels_of=pixels_of, policy=policy)


def sweep(ctx: MethodContext, split, video_embeds: torch.Tensor, ratios: list[float], settings: MethodSettings,
          policies: dict[str, torch.nn.Module] | None = None) -> list[Run]:
    """All tokens once, then every compressing method of the registry at every ratio, on `split` (its videos
    encoded once: video_embeds (V, N+1, D)). CaCoVID runs once per policy in `policies` (name -> trained policy;
    none: CaCoVID is left out). The ratio-independent scores (attention) are computed once per batch and shared."""
    ctx = replace(ctx, shared=registry.shared_scores(ctx, settings))

    def run(name, key, ratio, rule, seed=None):
        preds, keeps = predict(ctx.vlm, split, rule, desc=f"{name} {ratio}", video_embeds=video_embeds)
        return Run(name, key, ratio, preds == split.answers, seed, keeps)

    runs = [run(UPPER, "all", 1.0, keep_all)]
    for m in registry.compressing_methods(trained=bool(policies)):
        for seed, policy in (policies.items() if m.trained else [(None, None)]):
            method_ctx = ctx if policy is None else replace(ctx, policy=policy)
            for r in ratios:
                runs.append(run(m.name, m.key, r, registry.build(m.key, method_ctx, r, settings),
                                None if len(policies or {}) < 2 else seed))
    return runs


def _accuracy_row(split, outcomes: np.ndarray, types: list[str]) -> dict[str, float]:
    """Accuracy per question type and overall ('average') of per-question outcomes (n,) (0/1, or seed shares)."""
    frame = pd.DataFrame({"question_type": [it.get("question_type", "all") for it in split.items], "correct": outcomes})
    by_type = frame.groupby("question_type")["correct"].mean()
    return {**{t: float(by_type[t]) for t in types}, "average": float(frame["correct"].mean())}


def main_table(split, runs: list[Run], level: float = 0.95, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per method x retention (and per CaCoVID seed when there are several): accuracy per question type,
    the average with its bootstrap interval over the split's questions (`level`, `resamples`, `seed`), and the
    average as a share of the all-token average. With several seeds, CaCoVID's row is the mean over seeds (its
    interval from the per-question share of seeds that answered correctly) with the seeds' standard deviation
    (`sd`), and each seed has its own row (`seed`). Sorted by retention, then average, best first."""
    types = sorted({it.get("question_type", "all") for it in split.items})
    by_seed = [r for r in runs if r.seed is not None]
    groups: dict[tuple[str, float], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.method, run.retention), []).append(run)
    rows = []
    for (method, retention), members in groups.items():
        outcomes = np.mean([m.outcomes for m in members], axis=0)  # (n,) one run: its 0/1 outcomes
        low, high = bootstrap_interval(outcomes, level, resamples, seed)
        row = {"retention": retention, "method": method, **_accuracy_row(split, outcomes, types), "ci_low": low, "ci_high": high}
        if by_seed:
            averages = [float(np.mean(m.outcomes)) for m in members]
            row.update(seed="mean" if members[0].seed is not None else "", sd=float(np.std(averages, ddof=1)) if len(members) > 1 else np.nan)
        rows.append(row)
        if by_seed and members[0].seed is not None:
            for m in members:
                low, high = bootstrap_interval(m.outcomes, level, resamples, seed)
                rows.append({"retention": retention, "method": method, **_accuracy_row(split, m.outcomes, types),
                             "ci_low": low, "ci_high": high, "seed": m.seed, "sd": np.nan})
    table = pd.DataFrame(rows)
    upper = table.loc[table["method"] == UPPER, "average"]
    if len(upper) != 1:
        raise KitInputError(f"main table: expected one '{UPPER}' run, got {len(upper)}")
    table["share_of_upper_bound"] = table["average"] / float(upper.iloc[0])
    columns = ["retention", "method", *types, "average", "ci_low", "ci_high", "share_of_upper_bound"]
    table = table[columns + (["seed", "sd"] if by_seed else [])]
    return table.sort_values(["retention", "average"], ascending=[False, False], kind="stable").reset_index(drop=True)


def summary_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The main table without the per-seed rows (what the markdown table and the metrics show)."""
    return table if "seed" not in table else table[table["seed"].isin(["", "mean"])].reset_index(drop=True)


def main_markdown(table: pd.DataFrame) -> str:
    """The main table in percent: each average as `mean [ci_low, ci_high]`, with `± sd` over seeds where there is one."""
    shown = summary_rows(table)
    types = list(shown.columns[2:shown.columns.get_loc("average")])
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    average = [f"{pct(a)} [{pct(lo)}, {pct(hi)}]" + (f" ± {pct(sd)}" if "sd" in shown and pd.notna(sd) else "")
               for a, lo, hi, sd in zip(shown["average"], shown["ci_low"], shown["ci_high"],
                                        shown["sd"] if "sd" in shown else [np.nan] * len(shown))]
    out = pd.DataFrame({"retention": shown["retention"], "method": shown["method"],
                        **{t: (shown[t] * 100).round(1) for t in types}, "average [95% CI]": average,
                        "share_of_upper_bound": (shown["share_of_upper_bound"] * 100).round(1)})
    seeds = "" if "sd" not in table else " CaCoVID: mean over training seeds ± their standard deviation (each seed's row in main.csv)."
    papers = [f"- **{m.name}** ({m.year}): {m.paper}" for m in registry.METHODS if m.year and m.name in set(shown["method"])]
    return ("Test accuracy (%) by question type; the average with its 95% bootstrap interval over the test questions; "
            f"`share_of_upper_bound` = average / all-token average (%).{seeds}\n\n" + out.to_markdown(index=False)
            + "\n\nThe methods, by paper and year (compare/registry.py; each module's docstring lists its simplifications):\n\n"
            + "\n".join(papers) + "\n")


def retention_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Average accuracy, retention (rows, ascending) x method (columns), without the all-token row: the plot data."""
    shown = summary_rows(table)
    return shown[shown["method"] != UPPER].pivot(index="retention", columns="method", values="average")


@torch.no_grad()
def efficiency_table(ctx: MethodContext, video_embeds: torch.Tensor, retention: float, settings: MethodSettings,
                     policy=None, repeats: int = 20) -> pd.DataFrame:
    """The cost of each method for one item (`ctx.items[0]`, its video's embeddings video_embeds (1, N+1, D)) at
    `retention`: median selection time (each call computes its own scores: nothing shared), median prefill time with
    the kept tokens (efficiency.prefill, as generation does it), and peak memory of selection + prefill
    (efficiency.allocated_peak_mb: the allocator's peak on a GPU, the profiler's peak of live tensor memory on CPU,
    measured in a call of its own); then the total and the selection's share of the all-token prefill. What explains
    the prefill times: `first_layer_tokens`, the tokens the LLM's first layer sees (FastV's in-LLM pruning runs its
    first layers over every token), and `prefill_gflops`, the analytic FLOPs of that prefill
    (efficiency.selection_prefill_flops, the LLM's layers only); `method_gflops` adds what the method's selection
    runs in the LLM's layers (efficiency.method_prefill_flops: CaCoVID's policy layer, the attention scoring).
    CaCoVID uses `policy` (left out without one)."""
    idx = np.array([0])
    prompt = ctx.vlm.prompt(ctx.items[0])
    ctx = replace(ctx, policy=policy, shared={})
    shape, n = llm_shape_of(ctx.vlm), video_embeds.shape[1] - 1
    text = len(prompt.prefix_ids) + len(prompt.suffix_ids) + 1  # the never-pruned last video token included

    def run_prefill(selection):
        return prefill(ctx.vlm, prompt, video_embeds[0], selection)

    def counts(key, selection):
        first = text + (n if selection.prune_after_layer is not None else int(selection.keeps[0].sum()))
        return {"first_layer_tokens": first,
                "prefill_gflops": selection_prefill_flops(shape, n, text, selection) / 1e9,
                "method_gflops": method_prefill_flops(key, shape, n, text, retention, settings.fastv_layer) / 1e9}

    full_ms = median_ms(lambda: run_prefill(keep_all(idx, video_embeds)), repeats)
    rows = [{"method": UPPER, "selection_ms": 0.0, "prefill_ms": full_ms,
             "peak_memory_mb": allocated_peak_mb(lambda: run_prefill(keep_all(idx, video_embeds)), ctx.vlm.device),
             **counts("all", keep_all(idx, video_embeds))}]
    for m in registry.compressing_methods(trained=policy is not None):
        rule = registry.build(m.key, ctx, retention, settings)
        selection = rule(idx, video_embeds)
        rows.append({"method": m.name, "selection_ms": median_ms(lambda: rule(idx, video_embeds), repeats),
                     "prefill_ms": median_ms(lambda: run_prefill(selection), repeats),
                     "peak_memory_mb": allocated_peak_mb(lambda: run_prefill(rule(idx, video_embeds)), ctx.vlm.device),
                     **counts(m.key, selection)})
    table = pd.DataFrame(rows)
    table["total_ms"] = table["selection_ms"] + table["prefill_ms"]
    table["selection_share_of_full_prefill"] = table["selection_ms"] / full_ms
    return table.round(3)


def efficiency_markdown(table: pd.DataFrame, flops: pd.DataFrame, retention: float, device, repeats: int,
                        frames: int, tokens_per_frame: int, text_tokens: int) -> str:
    """reports/tables/efficiency.md: the measured table for one video, then the analytic FLOPs table."""
    return (f"One test video at retention {retention}, this machine ({device}), medians of {repeats} runs. "
            "`first_layer_tokens`: the tokens the LLM's first layer sees (FastV prunes inside the LLM, after its first "
            "layers have read every token); `prefill_gflops`: the analytic FLOPs of the timed prefill (the LLM's "
            "layers); `method_gflops`: with what the selection runs in the LLM's layers (CaCoVID's policy layer, the "
            "LLM attention scoring); `peak_memory_mb`: the peak of live tensor memory of one selection + prefill "
            "over what was held before (CUDA's allocator, or on CPU torch.profiler's allocation events); the "
            "selection's own peak at LLaVA-OneVision-7B's shape is compare/memory.py's.\n\n"
            + table.to_markdown(index=False)
            + f"\n\nAnalytic prefill FLOPs, LLaVA-OneVision-7B, {frames} frames x {tokens_per_frame} tokens + "
            f"{text_tokens} text tokens:\n\n" + flops.to_markdown(index=False) + "\n")


def accuracy_flops_table(main: pd.DataFrame, shape_embedded: LLMShape, embedded_tokens: int, embedded_text_tokens: int,
                         shape_7b: LLMShape = QWEN2_7B, tokens_7b: int = 32 * 196, text_7b: int = 128,
                         fastv_layer: int = 0, fastv_layer_7b: int = 1) -> pd.DataFrame:
    """Accuracy against prefill compute: one row per method x retention of the main table's summary rows
    (summary_rows), with its accuracy (`average`, `ci_low`, `ci_high`, and `sd` over seeds where there is one) and
    the analytic prefill FLOPs of what the method runs (efficiency.method_prefill_flops): at the embedded LLM's shape
    (`embedded_gflops`, `embedded_share` of the all-token prefill; `embedded_tokens` video tokens, `fastv_layer` as
    the benchmark ran it) and at LLaVA-OneVision-7B's (Qwen2-7B, `tokens_7b` video tokens (32 frames x 196) and
    `text_7b` text tokens: `llava_ov_7b_tflops`, `llava_ov_7b_share`). FastV's layer maps by depth share, not by
    index: at 7B it prunes after `fastv_layer_7b` = 1 (its paper's K = 2 of 28 layers), where the embedded 6-layer
    LLM prunes after layer 0 (K = 1); the attention-scored methods read that layer too. The accuracy is the
    embedded one in every column: the 7B shares say what the same selections would cost at 7B's shape, not how
    accurate they would be there. The vision encoder is left out (the same for every method)."""
    shown = summary_rows(main)
    rows = []
    for _, row in shown.iterrows():
        key = registry.method(row["method"]).key
        at_embedded = method_prefill_flops(key, shape_embedded, embedded_tokens, embedded_text_tokens, row["retention"],
                                           fastv_layer)
        at_7b = method_prefill_flops(key, shape_7b, tokens_7b, text_7b, row["retention"], fastv_layer_7b)
        rows.append({"method": row["method"], "key": key, "retention": row["retention"], "average": row["average"],
                     "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                     **({"sd": row["sd"]} if "sd" in shown else {}),
                     "embedded_gflops": at_embedded / 1e9,
                     "embedded_share": at_embedded / prefill_flops(shape_embedded,
                                                                   embedded_tokens + embedded_text_tokens),
                     "llava_ov_7b_tflops": at_7b / 1e12,
                     "llava_ov_7b_share": at_7b / prefill_flops(shape_7b, tokens_7b + text_7b)})
    return pd.DataFrame(rows)


def equal_flops_comparison(table: pd.DataFrame, method: str = "CaCoVID", against: str = "FastV",
                           column: str = "embedded_share") -> pd.DataFrame:
    """`method`'s accuracy at `against`'s compute: for each of `against`'s rows of an accuracy_flops_table, `method`'s
    average linearly interpolated at `against`'s FLOPs (`column`: embedded_share, llava_ov_7b_share, ...) between
    `method`'s measured rows (its retention ratios), and the difference `method` - `against`. NaN where `against`'s
    FLOPs lie outside the range of `method`'s measured FLOPs: no extrapolation. One row per `against` retention."""
    for name in (method, against):
        if not (table["method"] == name).any():
            raise KitInputError(f"equal_flops_comparison: no rows of {name!r} in the table")
    ours = table[table["method"] == method].sort_values(column)
    x, y = ours[column].to_numpy(float), ours["average"].to_numpy(float)
    rows = []
    for _, row in table[table["method"] == against].sort_values("retention", ascending=False).iterrows():
        at = float(row[column])
        inside = len(x) > 0 and x.min() - 1e-12 <= at <= x.max() + 1e-12
        value = float(np.interp(at, x, y)) if inside else float("nan")
        rows.append({"retention": row["retention"], column: at, f"{metric_key(against)}_accuracy": row["average"],
                     f"{metric_key(method)}_accuracy_at_equal_flops": value,
                     "difference": value - row["average"]})
    return pd.DataFrame(rows)


def metric_key(name: str) -> str:
    """A registered method's key (its display name where it is not registered): column-name stems."""
    try:
        return registry.method(name).key
    except KitInputError:
        return name


def accuracy_against_compute(main: pd.DataFrame, vlm, items: list[dict], fastv_layer: int, video_tokens_7b: int,
                             text_tokens_7b: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The benchmark's accuracy against prefill compute, at the embedded model's shape (`vlm`'s LLM, its prompts for
    `items`) and at LLaVA-OneVision-7B's (QWEN2_7B, FastV after layer 1 of 28, the paper's K = 2) -> (accuracy_flops_table,
    CaCoVID against FastV at equal FLOPs at both shapes: equal_flops_comparison's rows with `flops_share` and `shape`)."""
    table = accuracy_flops_table(main, llm_shape_of(vlm), vlm.num_video_tokens, prompt_text_tokens(vlm, items), QWEN2_7B,
                                 video_tokens_7b, text_tokens_7b, fastv_layer=fastv_layer, fastv_layer_7b=1)
    equal = pd.concat([equal_flops_comparison(table, column=c).rename(columns={c: "flops_share"}).assign(shape=c)
                       for c in ("embedded_share", "llava_ov_7b_share")], ignore_index=True)
    return table, equal


def efficiency_report(ctx: MethodContext, video_embeds: torch.Tensor, retention: float, settings: MethodSettings, policy,
                      repeats: int, frames_7b: int, tokens_per_frame_7b: int, text_tokens_7b: int,
                      ratios: list[float]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The efficiency section of the benchmark: efficiency_table for one item at `retention`, the analytic prefill-FLOPs
    table of LLaVA-OneVision-7B (flops_table, `frames_7b` x `tokens_per_frame_7b` video tokens + `text_tokens_7b`) at
    each of `ratios`, and the markdown of both -> (efficiency, flops, markdown)."""
    efficiency = efficiency_table(ctx, video_embeds, retention, settings, policy, repeats)
    flops = flops_table(QWEN2_7B, frames_7b * tokens_per_frame_7b, text_tokens_7b, ratios).round(3)
    markdown = efficiency_markdown(efficiency, flops, retention, ctx.vlm.device, repeats, frames_7b, tokens_per_frame_7b,
                                   text_tokens_7b)
    return efficiency, flops, markdown
