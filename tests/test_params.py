"""Typed stage configs: every block of params.yaml, the smoke profile and paper/params.yaml parses into its dataclass
(recipes into the library's own), and a bad key or value is one line naming it and the valid choices."""
import pytest
import yaml
from conftest import ROOT

from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig
from cacovid_lib.embedded.world import WorldSpec
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.compare.registry import MethodSettings
from cacovid_lib.pipeline.params import (STAGE_PARAMS, AblationsParams, AuditParams, BenchmarkParams, EvaluateParams,
                                         EvaluatePolicyParams, PolicyParams, PolicyUpperBoundParams, WorldParams, parse,
                                         read_params, stage_dataclass)

RUNNER_BLOCKS = {"runtime"}
"""blocks read by the stage runner, not by a notebook (runtime: cpu_pins.py, which checks it)"""


@pytest.mark.parametrize("file", ["params.yaml", "tests/smoke_params.yaml"])
def test_every_block_and_recipe_parses(file):
    params = {k: v for k, v in read_params(ROOT / file).items() if k not in RUNNER_BLOCKS}
    assert set(params) == set(STAGE_PARAMS), f"{file}: blocks without a dataclass, or dataclasses without a block"
    blocks = {name: parse(stage_dataclass(name), block, name) for name, block in params.items()}
    parse(WorldSpec, blocks["world"].spec, "world.spec")
    parse(SmallVLMConfig, blocks["vlm"].model, "vlm.model")
    parse(VLMTrainConfig, blocks["vlm"].train, "vlm.train")
    base = parse(PolicyTrainConfig, blocks["policy"].train, "policy.train")
    for ablation, variants in blocks["ablations"].variants.items():  # each variant: the base recipe, one setting changed
        for variant, overrides in variants.items():
            recipe = parse(PolicyTrainConfig, {**blocks["policy"].train, "steps": blocks["ablations"].steps, **overrides},
                           f"ablations.variants.{ablation}.{variant}")
            assert recipe.seed == base.seed


def test_the_dataclasses_defaults_are_the_recipe_that_params_yaml_shows():
    """params.yaml repeats a default only for the reader: every value it sets equals the dataclass's default, except
    the policy's recipe (PolicyTrainConfig's defaults are the method's) and the methods' settings (their papers')."""
    params = read_params(ROOT / "params.yaml")
    for name, block in params.items():
        if name == "methods" or name in RUNNER_BLOCKS:
            continue
        cls = stage_dataclass(name)
        parsed, default = parse(cls, block, name), cls()
        for key in block:
            if key not in ("spec", "model", "train", "variants"):  # recipes of their own, checked below
                assert getattr(parsed, key) == getattr(default, key), f"params.yaml {name}.{key} differs from its default"
    assert parse(WorldSpec, params["world"]["spec"], "world.spec") == WorldSpec()
    assert parse(SmallVLMConfig, params["vlm"]["model"], "vlm.model") == SmallVLMConfig()
    assert parse(VLMTrainConfig, params["vlm"]["train"], "vlm.train") == VLMTrainConfig()


def test_the_methods_block_parses_into_the_registrys_settings_by_their_own_names():
    assert stage_dataclass("methods") is MethodSettings
    settings = parse(MethodSettings, {"fastv_layer": 0, "temporal_merge_threshold": 0.8}, "methods")
    assert (settings.fastv_layer, settings.temporal_merge_threshold) == (0, 0.8)
    with pytest.raises(KitInputError) as err:  # set by the stages, not by params.yaml
        parse(MethodSettings, {"cacovid_rule": {"imp_ratio": 0.7}}, "methods")
    assert str(err.value).startswith("methods.cacovid_rule: not a parameter here; ")
    with pytest.raises(KitInputError, match=r"^methods.merge_threshold: unknown parameter; valid: "):
        parse(MethodSettings, {"merge_threshold": 0.8}, "methods")


def test_the_gpu_profiles_policy_recipe_parses_and_a_bad_key_there_is_one_line():
    from cacovid_lib.cli.launch_policy_training import train_config

    params = read_params(ROOT / "paper" / "params.yaml")
    cfg, epochs = train_config(params, "paper/params.yaml", video_r1=True)
    assert cfg.num_generations == 32 and epochs == 1
    params["policy"]["train"]["num_generation"] = 8
    with pytest.raises(KitInputError) as err:
        train_config(params, "paper/params.yaml", video_r1=True)
    assert str(err.value).startswith("paper/params.yaml: policy.train.num_generation: unknown parameter; valid: ")
    assert "num_generations" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cls, block, message", [
    (WorldParams, {"seeds": 1}, "world.seeds: unknown parameter; valid: num_frames, num_videos, seed, spec"),
    (WorldParams, {"num_frames": "8"}, "world.num_frames: expected a whole number, got '8'"),
    (WorldParams, {"num_videos": {"train": 2, "tset": 1}}, "world.num_videos.tset: unknown parameter; valid: test, train, val"),
    (PolicyParams, {"reward": "greedy"}, "policy.reward: 'greedy' is not valid; valid: multiple_choice, generation"),
    (EvaluateParams, {"random_keep_ratios": 0.5}, "evaluate.random_keep_ratios: expected a list, got 0.5"),
    (AblationsParams, {"steps": 1.5}, "ablations.steps: expected a whole number, got 1.5"),
])
def test_a_bad_key_or_value_is_one_line_naming_it(cls, block, message):
    with pytest.raises(KitInputError) as err:
        parse(cls, block, cls.__doc__.split("`")[1])
    assert str(err.value) == message


@pytest.mark.parametrize("cls, block, message", [
    (PolicyTrainConfig, {"steps": -5}, "policy.train.steps: -5 must be at least 1"),
    (PolicyTrainConfig, {"steps": 0}, "policy.train.steps: 0 must be at least 1"),
    (PolicyTrainConfig, {"num_iter_for_item": 0}, "policy.train.num_iter_for_item: 0 must be at least 1"),
    (PolicyTrainConfig, {"items_per_step": 0}, "policy.train.items_per_step: 0 must be at least 1"),
    (PolicyTrainConfig, {"lr": 0.0}, "policy.train.lr: 0.0 must be more than 0"),
    (PolicyTrainConfig, {"frame_ratio": 1.5}, "policy.train.frame_ratio: 1.5 must be in (0, 1]"),
    (PolicyTrainConfig, {"eps_low": 1.0}, "policy.train.eps_low: 1.0 must be in [0, 1)"),
    (PolicyTrainConfig, {"checkpoint_every": -5}, "policy.train.checkpoint_every: -5 must be at least 0"),
    (AblationsParams, {"steps": -150}, "ablations.steps: -150 must be at least 1"),
    (AblationsParams, {"retention_ratios": [0.5, 0]}, "ablations.retention_ratios[1]: 0.0 must be in (0, 1]"),
    (EvaluatePolicyParams, {"rule_candidates": {"msr": [1.5]}}, "evaluate_policy.rule_candidates: unknown field(s) msr; known: imp_ratio, cap_multiple, frame_floor, "
     "frame_sharpness, allocation"),
    (BenchmarkParams, {"retention_ratios": [1.5, 0, -0.1]}, "benchmark.retention_ratios[0]: 1.5 must be in (0, 1]"),
    (BenchmarkParams, {"retention_ratios": [0.1, 0, -0.1]}, "benchmark.retention_ratios[1]: 0.0 must be in (0, 1]"),
    (BenchmarkParams, {"retention_ratios": []}, "benchmark.retention_ratios: needs at least one value"),
    (BenchmarkParams, {"efficiency_ratio": 0}, "benchmark.efficiency_ratio: 0.0 must be in (0, 1]"),
    (BenchmarkParams, {"timing_repeats": 0}, "benchmark.timing_repeats: 0 must be at least 1"),
    (EvaluatePolicyParams, {"retention_ratios": [0.25, -0.1]}, "evaluate_policy.retention_ratios[1]: -0.1 must be in (0, 1]"),
    (EvaluateParams, {"random_keep_ratios": [0]}, "evaluate.random_keep_ratios[0]: 0.0 must be in (0, 1]"),
    (PolicyUpperBoundParams, {"steps": 0}, "policy_upper_bound.steps: 0 must be at least 1"),
    (PolicyUpperBoundParams, {"targets": []}, "policy_upper_bound.targets: needs at least one value"),
    (AuditParams, {"num_items": 0}, "audit.num_items: 0 must be at least 1"),
    (WorldParams, {"num_videos": {"val": 0}}, "world.num_videos.val: 0 must be at least 1"),
    (PolicyParams, {"seeds": []}, "policy.seeds: needs at least one value"),
    (MethodSettings, {"fastvid_threshold": 1.5}, "methods.fastvid_threshold: 1.5 must be in [-1, 1]"),
    (MethodSettings, {"vidcom2_temperature": 0.0}, "methods.vidcom2_temperature: 0.0 must be more than 0"),
    (MethodSettings, {"fastv_layer": -1}, "methods.fastv_layer: -1 must be at least 0"),
])
def test_a_value_out_of_its_range_is_one_line_naming_it(cls, block, message):
    where = "policy.train" if cls is PolicyTrainConfig else "methods" if cls is MethodSettings else cls.__doc__.split("`")[1]
    with pytest.raises(KitInputError) as err:
        parse(cls, block, where)
    assert str(err.value) == message


def test_a_number_that_yaml_reads_as_text_gets_told_how_to_write_it(tmp_path):
    (tmp_path / "params.yaml").write_text("policy:\n  train:\n    lr: 1e-3\n    entropy_weight: 5e-1\n")
    train = read_params(tmp_path / "params.yaml")["policy"]["train"]
    assert train["lr"] == "1e-3"  # YAML 1.1: no dot, no signed exponent -> text
    with pytest.raises(KitInputError) as err:
        parse(PolicyTrainConfig, train, "policy.train")
    assert str(err.value) == ("policy.train.lr: '1e-3' is text to YAML (a number needs a dot and a signed exponent); "
                              "write 1.0e-3")
    with pytest.raises(KitInputError, match=r"^policy.train.entropy_weight: .*; write 5.0e-1$"):
        parse(PolicyTrainConfig, {"entropy_weight": "5e-1"}, "policy.train")
    assert read_params_text("lr: 1.0e-3") == {"lr": 0.001}  # what the message says to write is a number
    with pytest.raises(KitInputError, match=r"write 2.5e\+3$"):
        parse(BenchmarkParams, {"efficiency_ratio": "2.5e3"}, "benchmark")


def read_params_text(text: str) -> dict:
    return yaml.safe_load(text)


def test_read_params_names_the_file(tmp_path):
    with pytest.raises(KitInputError, match="nope.yaml: file not found"):
        read_params(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(KitInputError, match="list.yaml: expected a mapping of blocks, got list"):
        read_params(tmp_path / "list.yaml")


@pytest.mark.slow
def test_a_bad_value_in_params_yaml_stops_the_stage_with_one_line(tmp_path, monkeypatch, capsys):
    from cacovid_lib.pipeline.stage import main

    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate_vlm": {
        "deps": [str(ROOT / "notebooks" / "03-evaluate-video-llm.ipynb")], "params": ["world.num_frames", "evaluate"]}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"world": {"num_frames": 8}, "evaluate": {"seed": "zero"}}))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate_vlm", "--executed-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == "error: evaluate.seed: expected a whole number, got 'zero'"
