"""Typed stage configs: every block of params.yaml, the smoke profile and params.gpu.yaml parses into its dataclass
(recipes into the library's own), and a bad key or value is one line naming it and the valid choices."""
import pytest
import yaml
from conftest import ROOT

from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig
from cacovid_lib.embedded.world import WorldSpec
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.pipeline.params import (STAGE_PARAMS, AblationsParams, EvaluateParams, PolicyParams, WorldParams,
                                         parse, read_params)


@pytest.mark.parametrize("file", ["params.yaml", "tests/smoke_params.yaml"])
def test_every_block_and_recipe_parses(file):
    params = read_params(ROOT / file)
    assert set(params) == set(STAGE_PARAMS), f"{file}: blocks without a dataclass, or dataclasses without a block"
    blocks = {name: parse(STAGE_PARAMS[name], block, name) for name, block in params.items()}
    parse(WorldSpec, blocks["world"].spec, "world.spec")
    parse(SmallVLMConfig, blocks["vlm"].model, "vlm.model")
    parse(VLMTrainConfig, blocks["vlm"].train, "vlm.train")
    base = parse(PolicyTrainConfig, blocks["policy"].train, "policy.train")
    for ablation, variants in blocks["ablations"].variants.items():  # each variant: the base recipe, one setting changed
        for variant, overrides in variants.items():
            recipe = parse(PolicyTrainConfig, {**blocks["policy"].train, "steps": blocks["ablations"].steps, **overrides},
                           f"ablations.variants.{ablation}.{variant}")
            assert recipe.seed == base.seed


def test_the_gpu_profiles_policy_recipe_parses_and_a_bad_key_there_is_one_line():
    from cacovid_lib.pipeline.launch_policy_training import train_config

    params = read_params(ROOT / "params.gpu.yaml")
    cfg, epochs = train_config(params, "params.gpu.yaml", video_r1=True)
    assert cfg.num_generations == 32 and epochs == 1
    params["policy"]["train"]["num_generation"] = 8
    with pytest.raises(KitInputError) as err:
        train_config(params, "params.gpu.yaml", video_r1=True)
    assert str(err.value).startswith("params.gpu.yaml: policy.train.num_generation: unknown parameter; valid: ")
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
