"""Typed stage configs: each block of params.yaml read into a validated dataclass, with one YAML reader.

A notebook receives its block as a plain dict through papermill and turns it into its dataclass first thing:

    p = parse(BenchmarkParams, benchmark, "benchmark")      # a bad key or value: one KitInputError line naming it

Each dataclass's defaults are the embedded recipe: params.yaml sets only what a reader needs to see or what differs,
and a notebook run by hand parses `{}` (or a small labelled smoke override) with the same dataclass. Values are
checked for their range too (`check_ranges`: a step count of 0, a retention ratio of 1.5), each error one line naming
the key.

The training recipes are the library's own dataclasses (embedded.small_vlm.SmallVLMConfig / VLMTrainConfig,
method.train_loop.PolicyTrainConfig, embedded.world.WorldSpec) and the methods' settings the registry's
(compare.registry.MethodSettings): a stage block carries them as blocks or sub-blocks that the notebook parses with
the same `parse` (`parse(PolicyTrainConfig, p.train, "policy.train")`); they are not repeated here, and this module
imports no other part of the kit, so that a stage's code deps stay its own (code_deps.py).
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cacovid_lib.io_utils import COUNT, POSITIVE, RATIO, SEED, KitInputError, check_ranges


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


def _yaml_number_hint(value: str) -> str | None:
    """'1e-3' -> '1.0e-3': YAML reads a number in exponent form as text unless it has a dot and a signed exponent."""
    match = re.fullmatch(r"([-+]?[0-9]+)(\.[0-9]*)?[eE]([-+]?)([0-9]+)", value.strip())
    if not match:
        return None
    whole, frac, sign, exponent = match.groups()
    return f"{whole}{frac if frac and len(frac) > 1 else '.0'}e{sign or '+'}{exponent}"


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
        if isinstance(value, str) and _yaml_number_hint(value):
            raise KitInputError(f"{where}: {value!r} is text to YAML (a number needs a dot and a signed exponent); "
                                f"write {_yaml_number_hint(value)}")
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
    not_here = sorted(set(data) & {f.name for f in dataclasses.fields(cls) if "set_by" in f.metadata})
    if not_here:
        field_ = cls.__dataclass_fields__[not_here[0]]
        raise KitInputError(f"{where}.{not_here[0]}: not a parameter here; {field_.metadata['set_by']}")
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (KitInputError, TypeError, ValueError) as err:
        message = str(err)
        # "steps: ..." or "ratios[0]: ..." from the dataclass's own checks names one of its fields: where.steps
        named = re.match(r"(\w+)[\[:]", message)
        if named and named.group(1) in fields:
            raise KitInputError(f"{where}.{message}") from None
        raise KitInputError(f"{where}: {message}") from None


def to_dict(cfg) -> dict:
    """The resolved config as plain data (saved next to every checkpoint and model)."""
    return dataclasses.asdict(cfg)


# ---- one dataclass per params.yaml block: its defaults are the embedded recipe ---------------------------
@dataclass
class SplitSizes:
    train: int = 2400
    """videos in the training split (each has one question per asked object)"""
    val: int = 75
    """videos in the validation split (every choice made on data is made here)"""
    test: int = 250
    """videos in the test split (scored once per method; nothing is tuned on it)"""

    def __post_init__(self):
        check_ranges(self, train=COUNT, val=COUNT, test=COUNT)


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

    def __post_init__(self):
        check_ranges(self, seed=SEED, num_frames=COUNT)


@dataclass
class VLMParams:
    """`vlm`: the small video LLM (02-train-video-llm)."""

    model: dict = field(default_factory=dict)
    """sizes, parsed into embedded.small_vlm.SmallVLMConfig (which documents each); {} = its defaults"""
    train: dict = field(default_factory=dict)
    """recipe, parsed into embedded.small_vlm.VLMTrainConfig (which documents each); {} = its defaults"""


@dataclass
class VLMSeedSpreadParams:
    """`vlm_seed_spread`: the video LLM's recipe trained again at other seeds (13-vlm-seed-spread, extras/dvc.yaml)."""

    seeds: list[int] = field(default_factory=lambda: [1, 2])
    """seeds trained besides the pipeline's own (vlm.train.seed); each model goes to models/vlm_seeds/seed_<s>/"""
    workers: int = 2
    """trainings run at once, each in its own process (one torch thread each: one per core)"""

    def __post_init__(self):
        check_ranges(self, seeds=SEED, workers=COUNT)


@dataclass
class EvaluateParams:
    """`evaluate`: the video LLM on the test split with all, no, and random tokens (03-evaluate-video-llm)."""

    random_keep_ratios: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.1])
    """retention ratios of the random-token rows"""
    seed: int = 0
    """seeds the random masks (per item) and the bootstrap intervals"""

    def __post_init__(self):
        check_ranges(self, random_keep_ratios=RATIO, seed=SEED)


@dataclass
class PolicyParams:
    """`policy`: CaCoVID's policy training (06-train-policy)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one policy is trained per seed (dvc.yaml: train_policy foreach), into models/policy/seed_<s>/; the evaluation
    reports their mean and spread"""
    reward: typing.Literal["multiple_choice", "generation"] = "multiple_choice"
    """multiple_choice: option-text likelihood; generation: greedy answer scored by Video-R1's rewards"""
    train: dict = field(default_factory=dict)
    """recipe, parsed into method.train_loop.PolicyTrainConfig (which documents each; its defaults are the method's,
    the release's where they apply): params.yaml sets the embedded recipe's own values"""

    def __post_init__(self):
        check_ranges(self, seeds=SEED)


@dataclass
class EvaluatePolicyParams:
    """`evaluate_policy`: the trained policy at every retention ratio (07-evaluate-policy)."""

    retention_ratios: list[float] = field(default_factory=lambda: [0.25, 0.1, 0.05])
    """retention ratios scored on the test split"""
    rule_candidates: dict[str, list] = field(default_factory=lambda: {
        "imp_ratio": [0.5, 0.75, 1.0], "cap_multiple": [1.5, 3.0, None], "frame_floor": [0.5, 0.25, 0.0],
        "frame_sharpness": [3.0, 1.0, 10.0], "allocation": ["per_frame", "global"]})
    """values of each selection-rule field (method/selection.py SelectionRule) tried on the validation split, by
    coordinate search from the release's rule (compare/cacovid.py rule_search); the chosen rule is used on test and
    by later stages, the release's is reported beside it"""
    seed: int = 0
    """seeds the random baseline and the bootstrap intervals"""
    timing_repeats: int = 10
    """repeats of the selection-cost timing (median after warm-up)"""

    def __post_init__(self):
        check_ranges(self, retention_ratios=RATIO, seed=SEED, timing_repeats=COUNT)
        known = ("imp_ratio", "cap_multiple", "frame_floor", "frame_sharpness", "allocation")  # SelectionRule's fields
        unknown = sorted(set(self.rule_candidates) - set(known))
        if unknown:
            raise KitInputError(f"rule_candidates: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")


@dataclass
class PolicyUpperBoundParams:
    """`policy_upper_bound`: the policy network trained by supervision on the ground truth, beside the RL policies
    (08-policy-upper-bound)."""

    targets: list[typing.Literal["asked", "objects"]] = field(default_factory=lambda: ["asked", "objects"])
    """what each supervised policy is taught to keep: the asked objects' tokens, or every object's tokens"""
    steps: int = 2000
    """AdamW steps of each supervised training"""
    items_per_step: int = 4
    """training questions per step"""
    lr: float = 1e-3
    """the heads' learning rate (the copied layer's: a tenth, as in the RL loop)"""
    retention_ratios: list[float] = field(default_factory=lambda: [0.1, 0.05])
    """retention ratios scored on the test split"""
    seed: int = 0
    """seeds the policy's initialisation, the batches and the bootstrap intervals"""

    def __post_init__(self):
        if not self.targets:
            raise KitInputError("targets: needs at least one value")
        check_ranges(self, steps=COUNT, items_per_step=COUNT, lr=POSITIVE, retention_ratios=RATIO, seed=SEED)


@dataclass
class BenchmarkParams:
    """`benchmark`: every method x retention ratio on the test split, and their cost (09-benchmark)."""

    retention_ratios: list[float] = field(default_factory=lambda: [0.25, 0.1, 0.05])
    """retention ratios of the sweep"""
    seed: int = 0
    """seeds the random baseline and the bootstrap intervals"""
    efficiency_ratio: float = 0.1
    """retention ratio of the efficiency table"""
    timing_repeats: int = 10
    """repeats of each timing (median after warm-up)"""
    flops_frames: int = 32
    """analytic FLOPs model: LLaVA-OneVision-7B at this many frames ..."""
    flops_tokens_per_frame: int = 196
    """... of this many tokens ..."""
    flops_text_tokens: int = 128
    """... plus this many text tokens"""

    def __post_init__(self):
        check_ranges(self, retention_ratios=RATIO, seed=SEED, efficiency_ratio=RATIO, timing_repeats=COUNT,
                     flops_frames=COUNT, flops_tokens_per_frame=COUNT, flops_text_tokens=COUNT)


@dataclass
class AuditParams:
    """`audit`: measured token contributions against attention and policy scores (10-audit)."""

    num_items: int = 20
    """sampled test items (each costs one batched forward over N one-token-dropped masks)"""
    top_k: int = 29
    """size of the top sets compared (10% of the 288 video tokens)"""
    seed: int = 0
    """which test items are sampled"""
    peer_ratios: list[float] = field(default_factory=lambda: [0.1, 0.05])
    """retention ratios of the peers' step ablations (FlashVID, VisionZip, VidCom²) on the validation split"""

    def __post_init__(self):
        check_ranges(self, num_items=COUNT, top_k=COUNT, seed=SEED, peer_ratios=RATIO)


@dataclass
class AblationsParams:
    """`ablations`: short policy runs, one setting changed at a time, scored on validation (11-ablations)."""

    steps: int = 150
    """steps of each short run; every other setting of the base recipe is policy.train's"""
    train_items: int = 400
    """the first blind-filtered training questions the short runs draw from"""
    retention_ratios: list[float] = field(default_factory=lambda: [0.1, 0.05])
    """retention ratios each run is scored at (validation split)"""
    variants: dict = field(default_factory=dict)
    """ablation -> variant -> overrides of the base recipe ({} = the base itself); params.yaml lists the recipe's"""

    def __post_init__(self):
        check_ranges(self, steps=COUNT, train_items=COUNT, retention_ratios=RATIO)
        for ablation, variants in self.variants.items():
            if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
                raise KitInputError(f"variants: {ablation}: expected a mapping of variant -> overrides, got {variants!r}")


STAGE_PARAMS = {"world": WorldParams, "vlm": VLMParams, "vlm_seed_spread": VLMSeedSpreadParams, "evaluate": EvaluateParams,
                "policy": PolicyParams, "evaluate_policy": EvaluatePolicyParams,
                "policy_upper_bound": PolicyUpperBoundParams, "benchmark": BenchmarkParams,
                "methods": "cacovid_lib.compare.registry.MethodSettings", "audit": AuditParams, "ablations": AblationsParams}
"""params.yaml block -> its dataclass (`methods`: the registry's, named, not imported, so that a stage that does not
run the registry does not depend on it; `stage_dataclass` imports it)"""


def stage_dataclass(block: str):
    """The dataclass a params.yaml block parses into."""
    cls = STAGE_PARAMS[block]
    if isinstance(cls, str):
        import importlib

        module, _, name = cls.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    return cls
