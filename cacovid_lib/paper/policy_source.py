"""The paper pipeline's policy stage: one CaCoVID policy folder per model, from where the params say.

Sources (paper/params.yaml `models.<key>.policy_source`):
- release: the authors' released checkpoint (models/release_import.py reads only its policy tensors);
- folder: a kit policy folder, e.g. one trained by hand (cli/launch_policy_training.py);
- train: the kit trains one here: blind filtering of the `blind_filter.json` Video-R1 items through this model
  (cli/blind_filter.py), then `policy.processes` processes of cli/launch_policy_training.py under `accelerate launch`
  (one per GPU), with the `policy` block's settings; the filtered items and the training health (a CSV per step and
  its figure) stay in the policy folder;
- untrained: the model's first decoder layer with fresh seeded heads: the dry run's stand-in, its CaCoVID rows mean
  nothing;
- none: no policy; the evaluation leaves CaCoVID out of this model's rows and the report says so.
Every policy folder gets `policy_source.json` saying which, so the report can name it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cacovid_lib.io_utils import KitInputError, write_json_atomic
from cacovid_lib.method.policy import CompressionPolicy, load_policy, save_policy
from cacovid_lib.models.release_import import import_release_policy
from cacovid_lib.paper.evaluation_pass import launch_command


TRAINING_MODULES = ("cacovid_lib.cli.blind_filter", "cacovid_lib.cli.launch_policy_training")


def training_commands(params_file, params: dict, model: str, out_dir, modules=TRAINING_MODULES,
                      resume: bool = False) -> list[list[str]]:
    """The blind filter's and the launcher's command lines for source train, in order (`resume`: the filtered items
    are there already and the launcher continues from its last checkpoint); `modules`: the two command-line modules
    (a stage notebook imports them, so that DVC tracks their code). The launcher trains in bf16 mixed precision on
    GPUs, as the release (configs/accelerate_multi_gpu.yaml), with every accelerate setting on its command line."""
    policy, video_r1 = params.get("policy") or {}, (params.get("policy") or {}).get("video_r1") or {}
    blind = params.get("blind_filter") or {}
    filtered = str(Path(out_dir) / "video_r1_filtered.json")
    filtering = [sys.executable, "-m", modules[0], "--params", str(params_file), "--model", model,
                 "--video-r1", str(blind["json"]), "--media-root", str(video_r1["media_root"]), "--out", filtered]
    training = launch_command(int(policy.get("processes", 1)), mixed_precision="bf16") + [
        "-m", modules[1], "--params", str(params_file), "--model", model, "--video-r1", filtered,
        "--media-root", str(video_r1["media_root"]), "--out", str(out_dir)] + (["--resume"] if resume else [])
    return [training] if resume else [filtering, training]


def prepare_policy(params: dict, model: str, out_dir, load_model, params_file="paper/params.yaml",
                   modules=TRAINING_MODULES) -> dict:
    """Write `model`'s policy folder to `out_dir` (emptied first, except a killed training run's: source train continues
    from its last checkpoint, the folder being a persisted DVC output); load_model(params, model) -> the VideoLLM whose
    LLM the policy runs on (not called for source none). Returns what policy_source.json records."""
    entry = params["models"][model]
    source = entry.get("policy_source") or ("folder" if entry.get("policy") else "none")
    out_dir = Path(out_dir)
    resume = source == "train" and (out_dir / "trainer_state.pt").is_file() and (out_dir / "video_r1_filtered.json").is_file()
    if out_dir.exists() and not resume:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"model": model, "source": source}
    if source == "train":
        for cmd in training_commands(params_file, params, model, out_dir, modules, resume):
            subprocess.run(cmd, check=True)
        record["filtered_items"] = str(out_dir / "video_r1_filtered.json")
    elif source != "none":
        language_model = load_model(params, model).language_model
        if source == "release":
            import_release_policy(entry["release_checkpoint"], out_dir, language_model)
            record["checkpoint"] = str(entry["release_checkpoint"])
        elif source == "folder":
            if not (Path(entry["policy"]) / "policy.safetensors").is_file():
                raise KitInputError(f"{entry['policy']}: not a policy folder (no policy.safetensors)")
            save_policy(load_policy(entry["policy"], language_model), out_dir, base_model=str(entry["path"]),
                        extra={"source": "folder"})
            record["folder"] = str(entry["policy"])
        else:  # untrained
            save_policy(CompressionPolicy.from_llm(language_model, seed=0), out_dir, base_model=str(entry["path"]),
                        extra={"source": "untrained"})
    write_json_atomic(out_dir / "policy_source.json", record)
    return record
