"""RL diagnosis of the token head's collapse (not a pipeline stage): one policy run with some settings of
policy.train changed, on the blind-filtered training questions, scored on the validation split (never test) at 10%
and 5% with the committed imp_ratio: accuracy, its 95% interval and the object coverage of the kept tokens; the run's
history (training health plus the asked-object share of the rollouts and the reward with and without it) to a CSV.
Needs the pipeline's world, model and filtered items. Usage (writes under scratch/diagnosis/):
    .venv/bin/python scripts/diagnose_policy_rl.py NAME [key=value ...]     e.g. entropy entropy_weight=0.01 steps=500
Values are YAML (lists, numbers); every key is a PolicyTrainConfig field."""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from cacovid_lib.embedded.split import load_split
from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.stages.ablations import train_variant
from cacovid_lib.pipeline.params import PolicyParams, parse, read_params
from cacovid_lib.stages.policy_training import PolicyTask
from cacovid_lib.stages.policy_upper_bound import selection_table



def override(text: str) -> tuple[str, object]:
    """One `key=value` argument, its value read as YAML."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected key=value")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the run's name: writes scratch/diagnosis/NAME.{csv,json}")
    parser.add_argument("overrides", nargs="*", type=override, metavar="key=value",
                        help="a PolicyTrainConfig field and its YAML value, e.g. entropy_weight=0.01 steps=500")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    name, overrides = args.name, dict(args.overrides)
    torch.set_num_threads(1)
    run(name, overrides)


def run(name: str, overrides: dict) -> None:
    params = read_params("params.yaml")
    p = parse(PolicyParams, params["policy"], "policy")
    base = parse(PolicyTrainConfig, p.train, "policy.train")
    imp_ratio = json.loads(Path("reports/metrics/policy.json").read_text())["imp_ratio"]
    vlm = LlavaOneVisionVideoLLM.from_pretrained("models/small_vlm", num_frames=8)
    for w in vlm.model.parameters():
        w.requires_grad_(False)
    train = load_split("data/world", "train", 8, items_file="data/filtered/train.json")
    val = load_split("data/world", "val", 8)
    task = PolicyTask(vlm, train, reward=p.reward)
    start = time.time()
    policy, history = train_variant(task, replace(base, seed=0), overrides)
    train_s = time.time() - start
    table = selection_table(vlm, {name: policy}, val, encode_videos(vlm, val.frames), [0.1, 0.05], imp_ratio)
    out = Path("scratch/diagnosis")
    out.mkdir(parents=True, exist_ok=True)
    history.to_csv(out / f"{name}.csv", index=False)
    tail = history.tail(max(1, len(history) // 5))
    result = {"name": name, "overrides": overrides, "train_s": round(train_s), "imp_ratio": imp_ratio,
              **{f"final_{c}": round(float(tail[c].mean()), 4) for c in
                 ("reward_token", "entropy_token", "zero_spread_token", "asked_in_rollouts", "reward_with_asked",
                  "reward_without_asked")},
              "val": table.drop(columns="policy").round(4).to_dict("records")}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
