"""Smoke profile of the real pipeline: papermill executes the real notebooks on a tiny world."""
import json

import yaml
from conftest import ROOT

from cacovid_lib.pipeline.stage import load_params, main, run_notebook, stage_spec

NB = ROOT / "notebooks"


def test_notebooks_run_end_to_end(tmp_path):
    d = {k: str(tmp_path / k) for k in ("world", "model", "figures", "plots", "metrics", "tables", "executed", "policy")}
    world = {"seed": 0, "num_frames": 8, "num_videos": {"train": 16, "val": 4, "test": 6}}
    run_notebook(NB / "01-build-world.ipynb", {"world": world, "world_dir": d["world"], "figures_dir": d["figures"]},
                 d["executed"], cwd=ROOT)
    vlm = {"model": {"text_hidden": 64, "text_layers": 2}, "train": {"steps": 6, "batch_size": 8, "curriculum_steps": 3}}
    run_notebook(NB / "02-train-video-llm.ipynb", {"world": {"num_frames": 8}, "vlm": vlm, "world_dir": d["world"],
                 "model_dir": d["model"], "plots_dir": d["plots"], "figures_dir": d["figures"]}, d["executed"], cwd=ROOT)
    run_notebook(NB / "03-evaluate-video-llm.ipynb", {"world": {"num_frames": 8}, "evaluate": {"random_keep_ratios": [0.5], "seed": 0},
                 "world_dir": d["world"], "model_dir": d["model"], "metrics_dir": d["metrics"], "tables_dir": d["tables"]},
                 d["executed"], cwd=ROOT)
    filtered = str(tmp_path / "filtered" / "train.json")
    run_notebook(NB / "04-filter-blind.ipynb", {"world": {"num_frames": 8}, "world_dir": d["world"], "model_dir": d["model"],
                 "filtered_file": filtered, "metrics_dir": d["metrics"]}, d["executed"], cwd=ROOT)
    policy = {"train": {"steps": 4, "items_per_step": 2, "num_generations": 8, "num_iter_for_item": 2}, "reward": "multiple_choice"}
    run_notebook(NB / "05-train-policy.ipynb", {"world": {"num_frames": 8}, "policy": policy, "world_dir": d["world"],
                 "model_dir": d["model"], "filtered_file": filtered, "policy_dir": d["policy"], "plots_dir": d["plots"],
                 "figures_dir": d["figures"]}, d["executed"], cwd=ROOT)
    run_notebook(NB / "06-evaluate-policy.ipynb", {"world": {"num_frames": 8}, "evaluate_policy": {
                 "retention_ratios": [0.25, 0.1], "imp_ratio_candidates": [0.5, 1.0], "seed": 0, "timing_repeats": 2},
                 "world_dir": d["world"], "model_dir": d["model"], "policy_dir": d["policy"], "metrics_dir": d["metrics"],
                 "tables_dir": d["tables"], "figures_dir": d["figures"]}, d["executed"], cwd=ROOT)
    bench = {"retention_ratios": [0.25, 0.1], "fastv_layer": 0, "temporal_merge_threshold": 0.9, "visionzip_dominant_share": 0.84375,
             "seed": 0, "efficiency_ratio": 0.1, "timing_repeats": 2, "flops_frames": 32, "flops_tokens_per_frame": 196,
             "flops_text_tokens": 128}
    run_notebook(NB / "07-benchmark.ipynb", {"world": {"num_frames": 8}, "benchmark": bench, "world_dir": d["world"],
                 "model_dir": d["model"], "policy_dir": d["policy"], "policy_metrics": str(tmp_path / "metrics" / "policy.json"),
                 "metrics_dir": d["metrics"], "tables_dir": d["tables"], "plots_dir": d["plots"], "figures_dir": d["figures"]},
                 d["executed"], cwd=ROOT)
    run_notebook(NB / "08-audit.ipynb", {"world": {"num_frames": 8}, "audit": {"num_items": 3, "fastv_layer": 0, "top_k": 12, "seed": 0},
                 "world_dir": d["world"], "model_dir": d["model"], "policy_dir": d["policy"], "metrics_dir": d["metrics"],
                 "tables_dir": d["tables"], "figures_dir": d["figures"]}, d["executed"], cwd=ROOT)
    ablations = {"train": {"steps": 4, "items_per_step": 2, "num_generations": 8, "num_iter_for_item": 2}, "train_items": 16,
                 "retention_ratios": [0.1], "imp_ratios": [0.5, 1.0], "variants": {
                     "sampler": {"grouped": {}, "independent": {"sampler": "independent"}},
                     "sampling_modes": {"token": {"sampling_modes": ["token"]}, "all": {}}}}
    run_notebook(NB / "09-ablations.ipynb", {"world": {"num_frames": 8}, "ablations": ablations, "world_dir": d["world"],
                 "model_dir": d["model"], "filtered_file": filtered, "policy_dir": d["policy"],
                 "policy_metrics": str(tmp_path / "metrics" / "policy.json"), "metrics_dir": d["metrics"],
                 "tables_dir": d["tables"], "plots_dir": d["plots"], "figures_dir": d["figures"]}, d["executed"], cwd=ROOT)
    run_notebook(NB / "10-report.ipynb", {"reports_dir": str(tmp_path)}, d["executed"], cwd=ROOT)
    blind = json.loads((tmp_path / "metrics" / "blind_filter.json").read_text())
    assert blind["num_train"] == 16 * 4 and blind["num_kept"] == len(json.loads(open(filtered).read()))
    pol = json.loads((tmp_path / "metrics" / "policy.json").read_text())
    assert {"accuracy_full", "accuracy_at_0.25", "accuracy_at_0.10", "random_accuracy_at_0.10", "selection_ms"} <= set(pol)
    assert pol["imp_ratio"] in (0.5, 1.0)
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == ["policy.safetensors", "policy_config.json"]
    assert len((tmp_path / "plots" / "policy_training.csv").read_text().splitlines()) == 1 + 4
    assert (tmp_path / "figures" / "policy_training.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "policy_retention.png").stat().st_size > 1000
    bench = json.loads((tmp_path / "metrics" / "benchmark.json").read_text())
    assert set(bench["methods"]) == {"CaCoVID", "Random", "Uniform", "FastV", "FastV (input)", "VisionZip", "DivPrune", "Temporal merge"}
    assert set(bench["methods"]["DivPrune"]) == {"0.25", "0.10"} and "cacovid_margin_at_0.10" in bench
    main_table = (tmp_path / "tables" / "main.csv").read_text().splitlines()
    assert len(main_table) == 1 + 1 + 8 * 2  # header, all tokens, 8 methods x 2 ratios
    efficiency = json.loads((tmp_path / "metrics" / "efficiency.json").read_text())
    assert efficiency["selection_ms"]["CaCoVID"] > 0 and efficiency["llava_ov_7b_speedup_at_0.10"] > 1
    assert (tmp_path / "figures" / "benchmark_retention.png").stat().st_size > 1000
    audit = json.loads((tmp_path / "metrics" / "audit.json").read_text())
    assert audit["num_items"] == 3 and audit["contribution_spearman_with_contribution"] == 1.0
    assert (tmp_path / "figures" / "audit_heatmaps.png").stat().st_size > 1000
    abl = json.loads((tmp_path / "metrics" / "ablations.json").read_text())
    assert set(abl) == {"sampler", "sampling_modes", "imp_ratio"} and set(abl["sampler"]) == {"grouped", "independent"}
    runs = {line.split(",")[0] for line in (tmp_path / "plots" / "ablations.csv").read_text().splitlines()[1:]}
    assert runs == {"base", "sampler=independent", "sampling_modes=token"}  # the base run is shared, trained once
    report = (tmp_path / "README.md").read_text()
    assert "## Main table" in report and "![Contribution vs attention](figures/audit_heatmaps.png)" in report
    vlm_acc = json.loads((tmp_path / "metrics" / "vlm.json").read_text())["accuracy_full"]
    assert f"Small video LLM, test split: {vlm_acc:.3f} with all tokens" in report  # read from the metrics, not typed in
    metrics = json.loads((tmp_path / "metrics" / "vlm.json").read_text())
    assert metrics["num_test"] == 6 * 4
    assert 0 <= metrics["accuracy_full"] <= 1 and 0 <= metrics["accuracy_blind"] <= 1
    assert set(metrics["accuracy_full_by_type"]) == {"colour_of_shape", "shape_of_colour", "which_object"}
    assert (tmp_path / "figures" / "world_samples.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "vlm_training.png").stat().st_size > 1000
    assert len((tmp_path / "plots" / "vlm_training.csv").read_text().splitlines()) == 1 + 6
    assert sorted(p.name for p in (tmp_path / "executed").iterdir()) == [
        "01-build-world.ipynb", "02-train-video-llm.ipynb", "03-evaluate-video-llm.ipynb", "04-filter-blind.ipynb",
        "05-train-policy.ipynb", "06-evaluate-policy.ipynb", "07-benchmark.ipynb", "08-audit.ipynb",
        "09-ablations.ipynb", "10-report.ipynb"]


def test_every_stage_reads_declared_params_only():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in stages:
        notebook, names = stage_spec(ROOT / "dvc.yaml", name)
        assert (ROOT / notebook).is_file() and "cacovid_lib" in stages[name]["deps"]
        load_params(ROOT / "params.yaml", names)  # every declared param exists


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
