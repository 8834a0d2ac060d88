"""Typed stage configs: each block of params.yaml read into a validated dataclass, with one YAML reader.

A notebook receives its block as a plain dict through papermill and turns it into its dataclass first thing:

    p = parse(BenchmarkParams, benchmark, "benchmark")      # a bad key or value: one KitInputError line naming it

The training recipes are the library's own dataclasses (embedded.small_vlm.SmallVLMConfig / VLMTrainConfig,
method.train_loop.PolicyTrainConfig, embedded.world.WorldSpec): a stage block carries them as sub-blocks that the
notebook parses with the same `parse` (`parse(PolicyTrainConfig, p.train, "policy.train")`); they are not repeated
here, and this module imports no other part of the kit, so that a stage's code deps stay its own (code_deps.py).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cacovid_lib.io_utils import KitInputError


def read_params(path) -> dict:
    """The one YAML reader of stages and CLIs: the file's mapping, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise KitInputError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise KitInputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise KitInputError(f"{path}: expected a mapping of blocks, got {type(data).__name__}")
    return data


def _check_value(value, hint, where: str):
    """Convert/validate one value against a type hint (dataclasses recursively); one-line error otherwise."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        return _check_value(value, next(o for o in options if o is not type(None)), where)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise KitInputError(f"{where}: {value!r} is not valid; valid: {', '.join(map(str, choices))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise KitInputError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (typing.Any,)
        out = [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise KitInputError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KitInputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KitInputError(f"{where}: expected a whole number, got {value!r}")
        return value
    if hint in (str, bool) and not isinstance(value, hint):
        raise KitInputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def parse(cls, data, where: str):
    """`cls(**data)` with every key checked: an unknown key or a wrong value is one line naming `where.key` and the
    valid choices; errors the dataclass itself raises (its __post_init__ checks) get `where` in front."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise KitInputError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise KitInputError(f"{where}.{unknown[0]}: unknown parameter; valid: {', '.join(sorted(fields))}")
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except KitInputError as err:
        raise KitInputError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise KitInputError(f"{where}: {err}") from None


def to_dict(cfg) -> dict:
    """The resolved config as plain data (saved next to every checkpoint and model)."""
    return dataclasses.asdict(cfg)


# ---- one dataclass per params.yaml block ---------------------------------------------------------------
@dataclass
class SplitSizes:
    train: int = 2400
    """videos in the training split (each has one question per asked object)"""
    val: int = 75
    """videos in the validation split (every choice made on data is made here)"""
    test: int = 250
    """videos in the test split (scored once per method; nothing is tuned on it)"""


@dataclass
class WorldParams:
    """`world`: the embedded video-QA world (01-build-world)."""

    seed: int = 0
    """every video, layout and question follows from this seed"""
    num_frames: int = 8
    """frames sampled per video (uniformly, with decord) -> num_frames x grid x grid video tokens"""
    num_videos: SplitSizes = field(default_factory=SplitSizes)
    """videos per split"""
    spec: dict = field(default_factory=dict)
    """the scene generator's knobs, parsed into embedded.world.WorldSpec (which documents each); {} = its defaults"""


@dataclass
class VisionPretrainingParams:
    """`vision_pretraining`: the vision tower pretrained on the world's frames, task-agnostic (14-pretrain-vision-tower)."""

    train: dict = field(default_factory=dict)
    """recipe, parsed into embedded.vision_pretraining.VisionPretrainConfig (which documents each)"""


@dataclass
class VLMParams:
    """`vlm`: the small video LLM (02-train-video-llm)."""

    model: dict = field(default_factory=dict)
    """sizes, parsed into embedded.small_vlm.SmallVLMConfig (which documents each)"""
    train: dict = field(default_factory=dict)
    """recipe, parsed into embedded.small_vlm.VLMTrainConfig (which documents each)"""


@dataclass
class VLMSeedSpreadParams:
    """`vlm_seed_spread`: the video LLM's recipe trained again at other seeds (11-vlm-seed-spread, extras/dvc.yaml)."""

    seeds: list[int] = field(default_factory=lambda: [1, 2])
    """seeds trained besides the pipeline's own (vlm.train.seed); each model goes to models/vlm_seeds/seed_<s>/"""
    workers: int = 2
    """trainings run at once, each in its own process (the recipe's one torch thread each: one per core)"""


@dataclass
class EvaluateParams:
    """`evaluate`: the video LLM on the test split with all, no, and random tokens (03-evaluate-video-llm)."""

    random_keep_ratios: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.1])
    """retention ratios of the random-token rows"""
    seed: int = 0
    """seeds the random masks (per item) and the bootstrap intervals"""


@dataclass
class PolicyParams:
    """`policy`: CaCoVID's policy training (05-train-policy)."""

    seeds: list[int] = field(default_factory=lambda: [0])
    """one policy is trained per seed (dvc.yaml: train_policy foreach), into models/policy/seed_<s>/; the evaluation
    reports their mean and spread"""
    reward: typing.Literal["multiple_choice", "generation"] = "multiple_choice"
    """multiple_choice: option-text likelihood; generation: greedy answer scored by Video-R1's rewards"""
    train: dict = field(default_factory=dict)
    """recipe, parsed into method.train_loop.PolicyTrainConfig (which documents each)"""


@dataclass
class EvaluatePolicyParams:
    """`evaluate_policy`: the trained policy at every retention ratio (06-evaluate-policy)."""

    retention_ratios: list[float] = field(default_factory=lambda: [0.25, 0.2, 0.15, 0.1, 0.05])
    """retention ratios scored on the test split"""
    imp_ratio_candidates: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])
    """imp_ratio values tried on the validation split; the best is used on test and by later stages"""
    seed: int = 0
    """seeds the random baseline and the bootstrap intervals"""
    timing_repeats: int = 20
    """repeats of the selection-cost timing (median after warm-up)"""


@dataclass
class PolicyUpperBoundParams:
    """`policy_upper_bound`: the policy network trained by supervision on the ground truth, beside the RL policies
    (12-policy-upper-bound; issue 20's diagnosis)."""

    targets: list[typing.Literal["asked", "objects"]] = field(default_factory=lambda: ["asked", "objects"])
    """what each supervised policy is taught to keep: the asked objects' tokens, or every object's tokens"""
    steps: int = 1000
    """AdamW steps of each supervised training"""
    items_per_step: int = 4
    """training questions per step"""
    lr: float = 1e-3
    """the heads' learning rate (the copied layer's: a tenth, as in the RL loop)"""
    retention_ratios: list[float] = field(default_factory=lambda: [0.25, 0.1, 0.05])
    """retention ratios scored on the test split"""
    seed: int = 0
    """seeds the policy's initialisation, the batches and the bootstrap intervals"""


@dataclass
class BenchmarkParams:
    """`benchmark`: every method x retention ratio on the test split, and their cost (07-benchmark)."""

    retention_ratios: list[float] = field(default_factory=lambda: [0.25, 0.2, 0.15, 0.1, 0.05])
    """retention ratios of the sweep"""
    seed: int = 0
    """seeds the random baseline and the bootstrap intervals"""
    efficiency_ratio: float = 0.1
    """retention ratio of the efficiency table"""
    timing_repeats: int = 20
    """repeats of each timing (median after warm-up)"""
    flops_frames: int = 32
    """analytic FLOPs model: LLaVA-OneVision-7B at this many frames ..."""
    flops_tokens_per_frame: int = 196
    """... of this many tokens ..."""
    flops_text_tokens: int = 128
    """... plus this many text tokens"""


@dataclass
class AuditParams:
    """`audit`: measured token contributions against attention and policy scores (08-audit)."""

    num_items: int = 40
    """sampled test items (each costs one batched forward over N one-token-dropped masks)"""
    top_k: int = 12
    """size of the top sets compared (10% of the video tokens)"""
    seed: int = 0
    """which test items are sampled"""


@dataclass
class AblationsParams:
    """`ablations`: short policy runs, one setting changed at a time, scored on validation (09-ablations)."""

    steps: int = 150
    """steps of each short run; every other setting of the base recipe is policy.train's"""
    train_items: int = 400
    """the first blind-filtered training questions the short runs draw from"""
    retention_ratios: list[float] = field(default_factory=lambda: [0.1, 0.05])
    """retention ratios each run is scored at (validation split)"""
    imp_ratios: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    """inference-time ablation on the main policy"""
    variants: dict = field(default_factory=dict)
    """ablation -> variant -> overrides of the base recipe ({} = the base itself)"""


@dataclass
class MethodParams:
    """`methods`: the baselines' own settings, shared by the benchmark and the audit (compare/registry.py)."""

    fastv_layer: int = 1
    """FastV prunes after this LLM layer (K = layer + 1; FastV's K = 2 of 32 layers is ~6% of depth)"""
    temporal_merge_threshold: float = 0.9
    """cosine similarity above which a token merges into the same position of the previous frame"""
    visionzip_dominant_share: float = 54 / 64
    """share of VisionZip's kept tokens that are dominant (its default 54 of 64)"""
    fastvid_segment_share: float = 0.25
    """FastVID: at least c = share x frames segments (the paper's c = 8 of 32 frames)"""
    fastvid_threshold: float = 0.9
    """FastVID: adjacent frames less similar than this are cut apart (the paper's 0.9)"""
    fastvid_salient_share: float = 0.4
    """FastVID: share of a segment's budget kept by saliency (the paper's d = 0.4)"""
    fastvid_anchor_interval: int = 4
    """FastVID: density-peak anchors come from every p-th frame (the paper's p = 4)"""
    flashvid_selected_share: float = 0.7
    """FlashVID: share of the budget its per-frame selection keeps; the rest are merged trees (the kit's setting)"""
    flashvid_threshold: float = 0.8
    """FlashVID: a token links to the previous frame's most similar token at this cosine or more (the kit's setting)"""
    holitom_threshold: float = 0.8
    """HoliTom: a token this similar to the previous frame's is temporally redundant (the kit's setting)"""
    vidcom2_temperature: float = 0.01
    """VidCom²: softmax temperature of the frames' uniqueness"""


STAGE_PARAMS = {"world": WorldParams, "vision_pretraining": VisionPretrainingParams, "vlm": VLMParams, "vlm_seed_spread": VLMSeedSpreadParams,
                "evaluate": EvaluateParams, "policy": PolicyParams,
                "evaluate_policy": EvaluatePolicyParams, "policy_upper_bound": PolicyUpperBoundParams, "benchmark": BenchmarkParams, "methods": MethodParams,
                "audit": AuditParams, "ablations": AblationsParams}
"""params.yaml block -> its dataclass"""
