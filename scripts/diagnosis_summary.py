"""Collect the RL diagnosis runs (scripts/diagnose_policy_rl.py wrote scratch/diagnosis/NAME.{csv,json}) into
docs/lab-notebook/2026-12-06-rl-diagnosis/: a markdown table of every run (validation accuracy and asked-object
coverage at 10% and 5%, the final training health), the curves binned to 25 steps as one CSV, and one figure with
every run's token reward, token entropy, share of rollouts that keep the asked object, and the reward gap with and
without it.
    .venv/bin/python scripts/diagnosis_summary.py [NAME ...]     (default: every run in scratch/diagnosis/)"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cacovid_lib.io_utils import save_csv, save_figure, write_text_atomic  # noqa: E402

SRC, OUT = Path("scratch/diagnosis"), Path("docs/lab-notebook/2026-12-06-rl-diagnosis")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"runs to collect (default: every run in {SRC}/)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    summarize(args.names or sorted(p.stem for p in SRC.glob("*.json")), SRC, OUT)


def summarize(names: list[str], src: Path, out: Path) -> None:
    runs = {n: json.loads((src / f"{n}.json").read_text()) for n in names}
    rows = []
    for name, run in runs.items():
        val = {r["retention"]: r for r in run["val"]}
        row = {"run": name, "overrides": " ".join(f"{k}={v}" for k, v in run["overrides"].items()) or "-"}
        for ratio in (0.1, 0.05):
            v = val[ratio]
            row[f"val acc {ratio:g}"] = f"{v['accuracy']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
            row[f"asked kept {ratio:g}"] = round(v["asked_objects_kept"], 3)
        row |= {"reward (last 20%)": run["final_reward_token"], "entropy": run["final_entropy_token"],
                "zero spread": run["final_zero_spread_token"], "asked in rollouts": run["final_asked_in_rollouts"],
                "reward with / without asked":
                    f"{run['final_reward_with_asked']:.3f} / {run['final_reward_without_asked']:.3f}",
                "train s": run["train_s"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    write_text_atomic(out / "summary.md", table.to_markdown(index=False) + "\n")
    cols = ["reward_token", "entropy_token", "asked_in_rollouts", "reward_with_asked", "reward_without_asked"]
    curves = []
    for name in names:
        h = pd.read_csv(src / f"{name}.csv")
        binned = h.groupby(h["step"] // 25 * 25 + 12)[cols].mean().reset_index()
        curves.append(binned.assign(run=name))
    curves = pd.concat(curves, ignore_index=True)
    save_csv(curves.round(4), out / "curves.csv")
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    panels = [("reward_token", "token-mode reward"), ("entropy_token", "token-head entropy (nats)"),
              ("asked_in_rollouts", "share of token rollouts keeping the asked object"),
              ("reward_gap", "reward with minus without the asked object")]
    curves["reward_gap"] = curves["reward_with_asked"] - curves["reward_without_asked"]
    for ax, (col, title) in zip(axes.flat, panels):
        for name, c in curves.groupby("run", sort=False):
            ax.plot(c["step"], c[col], label=name)
        ax.set(title=title, xlabel="step")
    axes[0, 1].set_yscale("log")
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, out / "curves.png")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
