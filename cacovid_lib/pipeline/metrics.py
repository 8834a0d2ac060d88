"""Every stage's metrics file in one shape: a small, flat JSON object (one level of keys, numbers, booleans and a few
strings), so that `dvc metrics show` prints one readable row per file and `dvc metrics diff` lines up.

Names: `<what>[_at_<ratio>][_ci_low|_ci_high|_sd]`, e.g. `cacovid_accuracy_at_0.10`, `cacovid_accuracy_at_0.10_ci_low`;
a method's part is its registry key (`metric_name` of its display name: "FastV (input)" -> `fastv_input`).
The stage-specific builders below take the tables the notebooks already show; the full sweeps stay in CSV files.
"""
from __future__ import annotations

import math
import re
import unicodedata

import numpy as np
import pandas as pd

from cacovid_lib.io_utils import KitInputError, write_json_atomic

DIGITS = 4  # metrics are rounded to this many decimals: enough for accuracies on 1,000 questions, short in a table
HEADLINE_RATIOS = (0.10, 0.05)  # the retention ratios whose every method is in benchmark.json (all of them: main.csv)


def metric_name(text: str) -> str:
    """A display name as a metrics key part: lower case, runs of other characters as one '_' (superscripts as
    digits): "FastV (input)" -> "fastv_input", "VidCom²" -> "vidcom2", "token+frame" -> "token_frame"."""
    plain = unicodedata.normalize("NFKD", str(text)).lower()
    return re.sub(r"[^0-9a-z.]+", "_", plain).strip("_")


def at(ratio: float) -> str:
    """The ratio suffix of a key: 0.1 -> 'at_0.10'."""
    return f"at_{ratio:.2f}"


def _plain(value, where: str):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else round(float(value), DIGITS)
    if isinstance(value, str) or value is None:
        return value
    raise KitInputError(f"metrics {where}: {type(value).__name__} is not a flat metric (number, bool or string)")


def flat(metrics: dict, prefix: str = "") -> dict:
    """One level of keys: nested dicts joined with '_' ({"accuracy": {"full": 0.9}} -> {"accuracy_full": 0.9}),
    floats rounded to DIGITS (NaN -> null), numpy scalars as Python ones; a list or other value is an error."""
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}_"))
        else:
            out[name] = _plain(value, name)
    return out


def write_metrics(path, metrics: dict) -> dict:
    """Write `flat(metrics)` atomically to `path` and return it."""
    metrics = flat(metrics)
    write_json_atomic(path, metrics)
    return metrics


def with_interval(name: str, accuracy: float, low: float, high: float, sd: float | None = None) -> dict:
    """{name, name_ci_low, name_ci_high[, name_sd]}."""
    out = {name: accuracy, f"{name}_ci_low": low, f"{name}_ci_high": high}
    if sd is not None and not pd.isna(sd):
        out[f"{name}_sd"] = sd
    return out


# ---- one builder per stage -------------------------------------------------------------------------------
def policy_metrics(table: pd.DataFrame, full: dict, num_test: int, rule: dict, cost: dict) -> dict:
    """policy.json (stage evaluate_policy) from compare.cacovid.retention_table's (table, full), the selection rule
    chosen on validation (its fields, dataclasses.asdict: later stages read it back with compare.cacovid.chosen_rule)
    and selection_cost's dict."""
    out = {**with_interval("accuracy_full", full["accuracy"], full["ci_low"], full["ci_high"]), "num_test": num_test,
           **rule, **cost}
    for r, row in table.iterrows():
        out.update(with_interval(f"accuracy_{at(r)}", row["cacovid"], row["cacovid_ci_low"], row["cacovid_ci_high"],
                                 row.get("cacovid_sd")))
        if "release_rule" in row:
            out.update(with_interval(f"release_rule_accuracy_{at(r)}", row["release_rule"], row["release_rule_ci_low"],
                                     row["release_rule_ci_high"]))
        out.update(with_interval(f"random_accuracy_{at(r)}", row["random"], row["random_ci_low"], row["random_ci_high"]))
    return flat(out)


def benchmark_metrics(table: pd.DataFrame, num_test: int, ratios=HEADLINE_RATIOS) -> dict:
    """benchmark.json (stage benchmark) from compare.benchmark.main_table: the all-token accuracy, every method's accuracy
    with its interval (and sd over seeds) at the headline ratios, and CaCoVID's share of the upper bound and its
    margin over the best other method there."""
    rows = table if "seed" not in table else table[table["seed"].isin(["", "mean"])]
    upper = rows[rows["method"] == "All tokens"].iloc[0]
    out = {**with_interval("accuracy_all_tokens", upper["average"], upper["ci_low"], upper["ci_high"]), "num_test": num_test}
    for r in ratios:
        at_r = rows[np.isclose(rows["retention"], r) & (rows["method"] != "All tokens")]
        if at_r.empty:
            continue
        for _, row in at_r.iterrows():
            out.update(with_interval(f"{metric_name(row['method'])}_accuracy_{at(r)}", row["average"], row["ci_low"],
                                     row["ci_high"], row.get("sd")))
        ours = at_r[at_r["method"] == "CaCoVID"]
        if not ours.empty:
            # the best other method on the rounded accuracies (ties: the alphabetically last name), as the metrics show
            # them; CaCoVID's own other rows (the release's rule) are not baselines
            best, name = max((round(float(a), DIGITS), m) for m, a in zip(at_r["method"], at_r["average"])
                             if not m.startswith("CaCoVID"))
            out[f"cacovid_share_of_upper_bound_{at(r)}"] = ours["share_of_upper_bound"].iloc[0]
            out[f"cacovid_margin_{at(r)}"] = round(float(ours["average"].iloc[0]), DIGITS) - best
            out[f"best_baseline_{at(r)}"] = name
    return flat(out)


def efficiency_metrics(table: pd.DataFrame, flops: pd.DataFrame, retention: float) -> dict:
    """efficiency.json (stage benchmark) from compare.benchmark.efficiency_table and the analytic FLOPs table."""
    by_method = table.set_index("method")
    out = {"retention": retention, "full_prefill_ms": by_method.loc["All tokens", "prefill_ms"]}
    out.update({f"{metric_name(m)}_selection_ms": v for m, v in by_method["selection_ms"].drop("All tokens").items()})
    if "CaCoVID" in by_method.index:
        out["cacovid_selection_share_of_full_prefill"] = by_method.loc["CaCoVID", "selection_share_of_full_prefill"]
        if "DivPrune" in by_method.index:
            out["cacovid_faster_than_divprune"] = bool(by_method.loc["CaCoVID", "selection_ms"] < by_method.loc["DivPrune", "selection_ms"])
    speedups = flops.set_index("retention")["speedup_with_policy"]
    for r in HEADLINE_RATIOS:
        match = [s for ratio, s in speedups.items() if np.isclose(ratio, r)]
        if match:
            out[f"llava_ov_7b_speedup_{at(r)}"] = match[0]
    return flat(out)


def audit_metrics(table: pd.DataFrame, num_items: int) -> dict:
    """audit.json (stage audit) from compare.audit.rank_agreement: `<score>_<column>` for every cell."""
    return flat({"num_items": num_items, **{f"{name}_{col}": v for name, row in table.iterrows() for col, v in row.items()}})


def ablation_metrics(tables: dict[str, pd.DataFrame]) -> dict:
    """ablations.json (stage ablations) from stages.ablations' tables: `<ablation>_<variant>_<column>` for every cell."""
    return flat({f"{metric_name(ablation)}_{metric_name(variant)}_{col}": v
                 for ablation, table in tables.items() for variant, row in table.iterrows() for col, v in row.items()})


def upper_bound_metrics(table: pd.DataFrame, num_test: int) -> dict:
    """policy_upper_bound.json (stage policy_upper_bound) from stages.policy_upper_bound.selection_table:
    `<policy>_<rule>_<column>_<at_r>` for the accuracy (with its interval) and the object coverage of every policy x
    selection rule x retention ratio."""
    out: dict = {"num_test": num_test}
    for _, row in table.iterrows():
        key, r = metric_name(f"{row['policy']} {row['rule']}"), at(row["retention"])
        out.update(with_interval(f"{key}_accuracy_{r}", row["accuracy"], row["ci_low"], row["ci_high"]))
        out.update({f"{key}_{col}_{r}": row[col] for col in ("asked_objects_kept", "objects_covered", "kept_on_no_object")})
    return flat(out)
