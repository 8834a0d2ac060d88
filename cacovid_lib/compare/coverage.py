"""Which objects do a method's kept tokens show? The benchmark's diagnostic, from the embedded world's ground truth
(per-token object labels): a method that answers badly usually kept no token of what the question asks about.

The merging methods (temporal merge, FastVID, FlashVID, HoliTom) are scored at the positions
they keep; a merged token also carries the tokens merged into it, so their coverage is a lower bound.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cacovid_lib.data.schema import asked_objects


def object_coverage(labels: np.ndarray, asked: list[list[int]], keeps: np.ndarray) -> dict[str, float]:
    """labels (n, N): the object index each question's video token shows (-1: background or clutter);
    asked: per question, the objects it asks about; keeps (n, N) bool: the kept tokens. Returns
    - `asked_objects_kept`: share of questions, among those whose asked objects are on screen, with at least one
      kept token on every asked object that is on screen;
    - `objects_covered`: mean number of the video's objects with at least one kept token;
    - `kept_on_no_object`: share of kept tokens on background or clutter."""
    hit, covered = [], []
    for row, wanted, kept in zip(labels, asked, keeps):
        seen = set(row[kept].tolist()) - {-1}  # objects with a kept token
        on_screen = set(wanted) & set(row.tolist())
        if on_screen:
            hit.append(on_screen <= seen)
        covered.append(len(seen))
    return {"asked_objects_kept": float(np.mean(hit)) if hit else float("nan"),
            "objects_covered": float(np.mean(covered)),
            "kept_on_no_object": float((labels[keeps] == -1).mean()) if keeps.any() else float("nan")}


def coverage_table(split, runs) -> pd.DataFrame:
    """One row per method x retention of the benchmark's runs (compare.benchmark.Run, with their kept tokens); a
    method with several runs at one ratio (CaCoVID's seeds) is the mean of its runs. `split` needs object labels
    (the embedded world)."""
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N)
    asked = [asked_objects(it) for it in split.items]
    rows = [{"method": r.method, "retention": r.retention, **object_coverage(labels, asked, r.keeps)} for r in runs]
    table = pd.DataFrame(rows).groupby(["retention", "method"], sort=False).mean().reset_index()
    return table.sort_values(["retention", "asked_objects_kept"], ascending=[False, False], ignore_index=True)
