"""Smoke profile of the real pipeline: papermill executes every stage's real notebook on a tiny world
(tests/smoke_params.yaml, params.yaml's schema), in dvc.yaml's order, with the parameters and paths the stage runner
would pass. One test per stage checks what that stage wrote; `-k train_vlm` runs only the stages up to it."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, drawn_png

from cacovid_lib.compare.cacovid import chosen_rule
from cacovid_lib.compare.selection_loss import STEPS
from cacovid_lib.pipeline.stage import executed_name, load_params, main, run_notebook, stage_parameters, stage_runs, stage_spec

NB = ROOT / "notebooks"
DVC = ROOT / "dvc.yaml"
EXTRAS = ROOT / "extras" / "dvc.yaml"  # the extra stages, outside the default `dvc repro`
SMOKE_PARAMS = ROOT / "tests" / "smoke_params.yaml"
STAGES = stage_runs(DVC, SMOKE_PARAMS)  # dvc.yaml's order; train_policy@0, train_policy@1 (policy.seeds)


class Smoke:
    """Runs the stages below one folder, each once, every earlier stage first; a failed stage fails the later ones."""

    def __init__(self, root):
        self.root, self.done = root, {}

    def run(self, stage: str):
        last = max(i for i, s in enumerate(STAGES) if s.partition("@")[0] == stage)  # a foreach stage: all its items
        for earlier in STAGES[:last + 1]:
            if earlier not in self.done:
                try:
                    notebook, parameters = stage_parameters(DVC, earlier, SMOKE_PARAMS, root=self.root)
                    run_notebook(notebook, parameters, self.root / "reports" / "notebooks", cwd=ROOT,
                                 name=executed_name(notebook, earlier))
                    self.done[earlier] = None
                except Exception as err:  # noqa: BLE001 -- kept, to name the failed stage in every later test
                    self.done[earlier] = f"{type(err).__name__}: {str(err)[-2000:]}"
            if self.done[earlier] is not None:
                pytest.fail(f"stage {earlier} failed: {self.done[earlier]}")

    def file(self, rel: str):
        return self.root / rel

    def json(self, rel: str) -> dict:
        return json.loads(self.file(rel).read_text())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return Smoke(tmp_path_factory.mktemp("smoke"))


def _flat(metrics: dict) -> bool:
    return all(not isinstance(v, (dict, list)) for v in metrics.values())


@pytest.mark.slow
def test_build_world(smoke):
    smoke.run("build_world")
    train = json.loads(smoke.file("data/world/train.json").read_text())
    assert len(train) == 16 * 4 and len({it["problem_id"] for it in train}) == len(train)  # 4 questions per video
    drawn_png(smoke.file("reports/figures/world_samples.png"))  # decodes, not blank
    stats = smoke.json("reports/metrics/world_stats.json")
    assert _flat(stats) and stats["questions"] == 6 * 4 and stats["video_tokens"] == 8 * 4 * 4
    assert 0 < stats["question_token_share_median"] < 0.5  # a question needs a few of the video tokens, not most


@pytest.mark.slow
def test_train_vlm(smoke):
    smoke.run("train_vlm")
    assert {"config.json", "model.safetensors"} <= {p.name for p in smoke.file("models/small_vlm").iterdir()}
    vocab = json.loads(smoke.file("models/small_vlm/tokenizer.json").read_text())["model"]["vocab"]
    layouts = json.loads(smoke.file("data/world/train_layout.json").read_text())
    assert {o["shape"] for lay in layouts.values() for o in lay["objects"]} <= set(vocab)  # the world's words, star too
    history = smoke.file("reports/plots/vlm_training.csv").read_text().splitlines()
    assert {"step", "answer_loss", "aux_loss"} <= set(history[0].split(",")) and len(history) == 1 + 6
    assert drawn_png(smoke.file("reports/figures/vlm_training.png")) == pytest.approx((6, 3.2))  # inches


@pytest.mark.slow
def test_evaluate_vlm(smoke):
    smoke.run("evaluate_vlm")
    metrics = smoke.json("reports/metrics/vlm.json")
    assert _flat(metrics) and metrics["num_test"] == 6 * 4
    assert {"accuracy_full", "accuracy_blind", "accuracy_random_0.5", "accuracy_asked_objects_only", "accuracy_objects_only"} <= set(metrics)
    types = {it["question_type"] for it in json.loads(smoke.file("data/world/test.json").read_text())}
    assert len(types) >= 3 and {k for k in metrics if k.startswith("accuracy_full_")} == {f"accuracy_full_{t}" for t in types}
    table = smoke.file("reports/tables/vlm.md").read_text()
    overall = next(line for line in table.splitlines() if line.startswith("| overall"))
    assert float(overall.split("|")[2]) == round(metrics["accuracy_full"], 3)  # the table's "all tokens" number


@pytest.mark.slow
def test_token_geometry(smoke):
    smoke.run("token_geometry")
    geometry = smoke.json("reports/metrics/token_geometry.json")
    assert _flat(geometry) and geometry["num_videos"] == 6
    for kind in ("non_object_pair", "object_pair", "object_vs_non_object", "non_object_pair_other_cell"):
        assert -1 <= geometry[f"{kind}_cosine"] <= 1, kind
    assert drawn_png(smoke.file("reports/figures/token_geometry.png")) == pytest.approx((6.5, 3.5))  # inches


@pytest.mark.slow
def test_filter_blind(smoke):
    smoke.run("filter_blind")
    blind = smoke.json("reports/metrics/blind_filter.json")
    kept = json.loads(smoke.file("data/filtered/train.json").read_text())
    train = json.loads(smoke.file("data/world/train.json").read_text())
    assert _flat(blind) and blind["num_train"] == len(train) and blind["num_kept"] == len(kept)
    assert blind["share_dropped"] == round(1 - len(kept) / len(train), 4)
    assert all(item in train for item in kept)  # kept items are training items, unchanged


@pytest.mark.slow
def test_train_policy(smoke):
    smoke.run("train_policy")  # once per seed of policy.seeds (0 and 1 in the smoke profile)
    assert sorted(p.name for p in smoke.file("models/policy").iterdir()) == ["seed_0", "seed_1"]
    weights = []
    for seed in (0, 1):
        folder = smoke.file(f"models/policy/seed_{seed}")
        assert sorted(p.name for p in folder.iterdir()) == ["policy.safetensors", "policy_config.json"]
        config = json.loads((folder / "policy_config.json").read_text())
        assert config["step"] == 4 and config["train_config"]["seed"] == seed
        history = pd.read_csv(smoke.file(f"reports/plots/policy_training_seed_{seed}.csv"))
        assert len(history) == 4 and {"zero_spread_token", "clip_low", "entropy_token", "grad_norm"} <= set(history)
        assert history["asked_in_rollouts"].between(0, 1).all()  # the rollouts' asked-object share, every step
        drawn_png(smoke.file(f"reports/figures/policy_training_seed_{seed}.png"))  # decodes, not blank
        weights.append((folder / "policy.safetensors").read_bytes())
    assert weights[0] != weights[1]  # the seeds train different policies


def _covers(metrics: dict, key: str, n: int) -> bool:
    """The accuracy `key` over n questions and its 95% bootstrap interval: ordered within [0, 1], of zero width exactly
    when every question or none is right, and no wider than a 95% interval of a share of n questions can be."""
    low, accuracy, high = metrics[f"{key}_ci_low"], metrics[key], metrics[f"{key}_ci_high"]
    if accuracy in (0.0, 1.0):
        return low == accuracy == high
    return 0 <= low <= accuracy <= high <= 1 and 0 < high - low <= 2.5 / n**0.5


@pytest.mark.slow
def test_evaluate_policy(smoke):
    smoke.run("evaluate_policy")
    pol = smoke.json("reports/metrics/policy.json")
    assert _flat(pol) and pol["num_test"] == 6 * 4 and pol["imp_ratio"] in (0.5, 1.0) and pol["selection_ms"] > 0
    rules = pd.read_csv(smoke.file("reports/tables/selection_rules.csv"))
    assert len(rules) == 4 and rules["chosen"].sum() == 1  # the release's rule, then one field changed at a time
    assert chosen_rule(pol) == chosen_rule(rules[rules["chosen"]].iloc[0].replace({np.nan: None}).to_dict())
    for key in ("accuracy_full", "accuracy_at_0.25", "accuracy_at_0.10", "random_accuracy_at_0.25", "random_accuracy_at_0.10"):
        assert _covers(pol, key, pol["num_test"]), key
    table = smoke.file("reports/tables/policy.csv").read_text().splitlines()
    assert table[0].startswith("retention,cacovid,cacovid_ci_low,cacovid_ci_high,") and len(table) == 1 + 2
    assert drawn_png(smoke.file("reports/figures/policy_retention.png")) == pytest.approx((5, 3.2))  # inches


@pytest.mark.slow
def test_policy_upper_bound(smoke):
    smoke.run("policy_upper_bound")
    bound = smoke.json("reports/metrics/policy_upper_bound.json")
    assert _flat(bound) and bound["num_test"] == 6 * 4
    # both targets beside each RL policy, each with the release's rule and the chosen one
    names = [f"{policy}_{rule}" for policy in ("supervised_asked", "supervised_objects", "rl_seed_0", "rl_seed_1")
             for rule in ("release", "chosen")]
    for name in names:
        for r in ("0.25", "0.10"):
            assert _covers(bound, f"{name}_accuracy_at_{r}", bound["num_test"]) and 0 <= bound[f"{name}_asked_objects_kept_at_{r}"] <= 1
    table = pd.read_csv(smoke.file("reports/tables/policy_upper_bound.csv"))
    assert len(table) == len(names) * 2
    loss = pd.read_csv(smoke.file("reports/tables/selection_loss.csv"))  # where the asked object is lost, per step
    assert len(loss) == len(names) * 2 and np.allclose(loss[list(STEPS)].sum(axis=1), 1, atol=5e-4) and (loss["questions"] > 0).all()
    drawn_png(smoke.file("reports/figures/selection_loss.png"))
    losses = pd.read_csv(smoke.file("reports/plots/policy_upper_bound_loss.csv"))
    assert sorted(losses["target"].unique()) == ["asked", "objects"] and len(losses) == 2 * 4
    assert drawn_png(smoke.file("reports/figures/policy_upper_bound.png")) == pytest.approx((9, 3.3))  # inches


@pytest.mark.slow
def test_benchmark(smoke):
    from cacovid_lib.compare import registry

    smoke.run("benchmark")
    bench = smoke.json("reports/metrics/benchmark.json")
    methods = registry.compressing_methods()
    assert _flat(bench) and {k.removesuffix("_accuracy_at_0.10") for k in bench if k.endswith("_accuracy_at_0.10")} == \
        {m.key for m in methods}  # every registered method, by its registry key
    assert all(_covers(bench, f"{m.key}_accuracy_at_0.10", 6 * 4) for m in methods) and _covers(bench, "accuracy_all_tokens", 6 * 4)
    assert "cacovid_accuracy_at_0.25" not in bench  # headline ratios only; the whole sweep is in main.csv
    main = pd.read_csv(smoke.file("reports/tables/main.csv"))
    seeds = main[main["seed"].astype(str).str.startswith("seed_")]  # CaCoVID per policy seed, besides its "mean" row
    assert len(main) == 1 + len(methods) * 2 + 2 * 2 * 2  # all tokens, every method x 2 ratios, 2 rules x 2 seeds x 2 ratios
    assert set(seeds["method"]) == {"CaCoVID", "CaCoVID (release rule)"} and sorted(seeds["seed"].unique()) == ["seed_0", "seed_1"]
    assert set(main["method"]) == {"All tokens", *(m.name for m in methods)}  # the registry's display names
    ours = main[(main["method"] == "CaCoVID") & (main["retention"] == 0.1) & (main["seed"] == "mean")].iloc[0]
    per_seed = seeds[(seeds["retention"] == 0.1) & (seeds["method"] == "CaCoVID")]["average"]
    assert ours["average"] == pytest.approx(per_seed.mean(), abs=1e-4) and ours["sd"] == pytest.approx(per_seed.std(), abs=1e-4)
    assert ours["average"] == pytest.approx(bench["cacovid_accuracy_at_0.10"], abs=1e-4)
    assert ours["ci_low"] == pytest.approx(bench["cacovid_accuracy_at_0.10_ci_low"], abs=1e-4)
    best = main[(main["retention"] == 0.1) & ~main["method"].str.startswith("CaCoVID")]["average"].max()
    assert bench["cacovid_margin_at_0.10"] == pytest.approx(ours["average"] - best, abs=1e-4)
    assert list(pd.read_csv(smoke.file("reports/plots/benchmark.csv")).columns) == ["retention", *sorted(m.name for m in methods)]
    efficiency = pd.read_csv(smoke.file("reports/tables/efficiency.csv"))
    assert list(efficiency["method"]) == ["All tokens", *(m.name for m in methods)] and (efficiency["prefill_ms"] > 0).all()
    eff = smoke.json("reports/metrics/efficiency.json")
    assert _flat(eff) and eff["cacovid_selection_ms"] > 0 and eff["llava_ov_7b_speedup_at_0.10"] > 1
    assert drawn_png(smoke.file("reports/figures/benchmark_retention.png")) == pytest.approx((6.5, 4))  # inches
    flops = pd.read_csv(smoke.file("reports/tables/accuracy_flops.csv"))  # every method x ratio, with its FLOPs share
    assert len(flops) == 1 + len(methods) * 2 and flops["embedded_share"].between(0, 1.5).all()
    assert flops.loc[flops["method"] == "All tokens", "embedded_share"].tolist() == [1.0]
    assert len(pd.read_csv(smoke.file("reports/tables/equal_flops.csv"))) == 2 * 2  # FastV's 2 ratios x 2 shapes
    drawn_png(smoke.file("reports/figures/accuracy_flops.png"))
    coverage = pd.read_csv(smoke.file("reports/tables/coverage.csv"))
    assert len(coverage) == 1 + len(methods) * 2  # CaCoVID's seeds averaged into one row per ratio
    everything = coverage[coverage["method"] == "All tokens"].iloc[0]
    assert everything["asked_objects_kept"] == 1.0 and (coverage["asked_objects_kept"].between(0, 1)).all()


@pytest.mark.slow
def test_audit(smoke):
    smoke.run("audit")
    audit = smoke.json("reports/metrics/audit.json")
    assert _flat(audit) and audit["num_items"] == 3
    # the oracle row (the generator's ground truth) puts as many of its top 12 on the asked-about object as possible:
    # no score can beat it, and the policy and attention rows are measured against the same items
    oracle = audit["target_object_top12_on_target_object"]
    assert all(oracle >= audit[f"{name}_top12_on_target_object"] for name in ("contribution", "policy", "llm_attention",
                                                                             "vision_attention"))
    drawn_png(smoke.file("reports/figures/audit_heatmaps.png"))  # decodes, not blank
    peers = pd.read_csv(smoke.file("reports/tables/peer_ablations.csv"))  # the peers' steps ablated, on validation
    assert set(peers["method"]) == {"FlashVID", "VisionZip", "VidCom²", "Random"} and set(peers["retention"]) == {0.1}
    assert (peers["variant"] == "original").sum() == 4 and (peers["ci_low"] <= peers["accuracy"]).all()
    assert len(pd.read_csv(smoke.file("reports/tables/peer_geometry.csv"))) > 0


@pytest.mark.slow
def test_ablations(smoke):
    smoke.run("ablations")
    abl = smoke.json("reports/metrics/ablations.json")
    assert _flat(abl)
    runs = {"sampler_grouped", "sampler_independent", "sampling_modes_token", "sampling_modes_all"}
    assert {k.removesuffix("_val_accuracy_at_0.10") for k in abl if k.endswith("_val_accuracy_at_0.10")} == runs
    assert all(_covers(abl, f"{run}_val_accuracy_at_0.10", 4 * 4) for run in runs)  # val: 4 videos
    # the base recipe is shared: the grouped sampler and all sampling modes are one run, scored once
    assert abl["sampler_grouped_val_accuracy_at_0.10"] == abl["sampling_modes_all_val_accuracy_at_0.10"]
    history = pd.read_csv(smoke.file("reports/plots/ablations.csv"))
    assert set(history["run"]) == {"base", "sampler=independent", "sampling_modes=token"}  # each distinct run once
    assert (history.groupby("run")["step"].count() == 4).all()  # ablations.steps, not policy.train's
    assert history["entropy_token"].notna().all() and history["asked_in_rollouts"].between(0, 1).all()
    assert "4 steps" in smoke.file("reports/tables/ablations.md").read_text()


@pytest.mark.slow
def test_report(smoke):
    smoke.run("report")
    report = smoke.file("reports/README.md").read_text()
    assert "## Main table" in report and "![Contribution vs attention](figures/audit_heatmaps.png)" in report
    vlm_acc = smoke.json("reports/metrics/vlm.json")["accuracy_full"]
    assert f"Small video LLM, test split: {vlm_acc:.3f} with all tokens" in report  # read from the metrics, not typed in
    stats = smoke.json("reports/metrics/world_stats.json")
    assert f"| video_tokens | {stats['video_tokens']} |" in report and "![The embedded world](figures/world_samples.png)" in report
    assert "| method " in report.split("## Which objects the kept tokens show")[1]  # coverage.csv as a markdown table
    expected = [executed_name(stage_spec(DVC, run)[0], run) for run in STAGES]  # 05 once per seed
    assert sorted(p.name for p in smoke.file("reports/notebooks").iterdir()) == sorted(expected)


@pytest.mark.slow
def test_vlm_seed_spread(smoke):
    smoke.run("evaluate_vlm")  # the extra stage reads the world and the pipeline model's vlm.json
    notebook, parameters = stage_parameters(EXTRAS, "vlm_seed_spread", SMOKE_PARAMS, root=smoke.root)
    run_notebook(notebook, parameters, smoke.root / "extras_notebooks", cwd=ROOT, name=executed_name(notebook, "vlm_seed_spread"))
    table = pd.read_csv(smoke.file("reports/tables/vlm_seed_spread.csv"))
    assert table["seed"].tolist() == [0, 1]  # the pipeline's model, then the smoke profile's extra seed
    assert table.loc[0, "accuracy_full"] == smoke.json("reports/metrics/vlm.json")["accuracy_full"]
    assert (smoke.file("models/vlm_seeds/seed_1") / "model.safetensors").is_file()
    spread = smoke.json("reports/metrics/vlm_seed_spread.json")
    assert _flat(spread) and spread["num_seeds"] == 2 and spread["seeds"] == "0 1"
    assert spread["accuracy_full_min"] <= spread["accuracy_full_mean"] <= spread["accuracy_full_max"]
    drawn_png(smoke.file("reports/figures/vlm_seed_spread.png"))  # decodes, not blank


def test_every_stage_reads_declared_params_only():
    for dvc_file, name in [(DVC, n) for n in STAGES] + [(EXTRAS, "vlm_seed_spread")]:
        notebook, names = stage_spec(dvc_file, name)
        assert (dvc_file.parent / notebook).is_file(), name
        load_params(ROOT / "params.yaml", names)  # every declared param exists, in params.yaml
        load_params(SMOKE_PARAMS, names)  # and in the smoke profile


def test_bad_input_in_a_stage_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate_vlm": {
        "deps": [str(NB / "03-evaluate-video-llm.ipynb")], "params": ["world.num_frames"]}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"world": {"num_frames": 8}}))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate_vlm", "--executed-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: models/small_vlm: model folder not found"
    assert not (tmp_path / "out" / "03-evaluate-video-llm.ipynb").exists()  # nothing written half
    assert main(["nope"]) == 2
    assert "no stage named nope" in capsys.readouterr().err


def test_notebooks_are_stored_without_outputs_and_match_their_py_twins():
    import jupytext
    import nbformat

    for ipynb in sorted(NB.glob("*.ipynb")):
        nb = nbformat.read(ipynb, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), ipynb
        twin = jupytext.read(ipynb.with_suffix(".py"))
        assert [c.source for c in nb.cells] == [c.source for c in twin.cells], f"{ipynb.name} differs from its .py twin"
