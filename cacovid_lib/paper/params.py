"""The GPU profile's params file (paper/params.yaml): every block the paper's evaluation reads, into validated
dataclasses. An unknown or misspelled key, a wrong type or an out-of-range value is a one-line error
`<file>: block.key: problem`, raised before any model loads."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from cacovid_lib.compare import registry
from cacovid_lib.data.benchmarks import BENCHMARKS
from cacovid_lib.io_utils import COUNT, RATIO, SEED, KitInputError, Range, check_ranges
from cacovid_lib.models.loader import ATTENTION, DTYPES
from cacovid_lib.paper.answering import ANSWER_MODES
from cacovid_lib.pipeline.params import parse, read_params


PLACEHOLDER = "/path/to/"  # paper/params.yaml's paths until a user points them at their local copies
BLOCKS_OF_OTHER_COMMANDS = ("runtime", "policy", "blind_filter")  # read by the stage runner, the training and the filter
POLICY_SOURCES = ("release", "folder", "train", "untrained", "none")


def _check_given(obj, **ranges: Range) -> None:
    """check_ranges for the fields that are set (None: not in the params file)."""
    check_ranges(obj, **{name: allowed for name, allowed in ranges.items() if getattr(obj, name) is not None})


def _one_of(name: str, value, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise KitInputError(f"{name}: {value!r} is not valid; valid: {', '.join(choices)}")


@dataclass
class ModelEntry:
    """`models.<key>`: a model of the GPU profile (its key stands for --model). A field left out: the command line's,
    else DEFAULTS."""

    path: str | None = None
    """the model's local folder (llava-hf or Qwen layout), or a hub id already in the local Hugging Face cache"""
    policy: str | None = None
    """the kit policy folder method cacovid runs (policy.save_policy / release_import); policy_source folder"""
    policy_source: str | None = None
    """where the pipeline's policy stage takes CaCoVID's policy from: release (import the authors' checkpoint,
    release_checkpoint), folder (a kit policy folder, `policy`), train (blind filtering and training here, on the
    `policy` and `blind_filter` blocks' Video-R1 settings), untrained (the model's first
    layer with fresh heads: the dry run only, its CaCoVID rows mean nothing), none (no CaCoVID rows)"""
    release_checkpoint: str | None = None
    """the authors' released checkpoint folder (policy_source release; only its policy tensors are read)"""
    dtype: str | None = None
    """float32, bfloat16 or float16 (models.loader.DTYPES)"""
    attn_implementation: str | None = None
    """sdpa, eager or flash_attention_2 (models.loader.ATTENTION)"""
    frame_size: list[int] | None = None
    """Qwen2.5-VL only: [height, width] every frame is resized to"""
    prompt_template: str | None = None
    """overrides the model's chat template; must hold {problem} and the video marker"""

    def __post_init__(self):
        if self.path is None:
            raise KitInputError("path: required (the model's local folder)")
        _one_of("dtype", self.dtype, tuple(DTYPES))
        _one_of("policy_source", self.policy_source, POLICY_SOURCES)
        if self.policy_source == "release" and not self.release_checkpoint:
            raise KitInputError("release_checkpoint: required for policy_source release (the authors' checkpoint folder)")
        if self.policy_source == "folder" and not self.policy:
            raise KitInputError("policy: required for policy_source folder (a kit policy folder)")
        _one_of("attn_implementation", self.attn_implementation, ATTENTION)
        if self.frame_size is not None and len(self.frame_size) != 2:
            raise KitInputError(f"frame_size: expected [height, width], got {self.frame_size!r}")
        _check_given(self, frame_size=COUNT)


@dataclass
class RunParams:
    """`run`: what the paper's pipeline (paper/dvc.yaml) runs."""

    models: list[str] = field(default_factory=lambda: ["llava_onevision_7b", "qwen2_5_vl_3b"])
    """keys of `models`: one policy stage and one evaluation stage per benchmark each"""
    benchmarks: list[str] = field(default_factory=lambda: ["longvideobench", "mlvu_dev", "mlvu_test", "videomme"])
    """keys of `benchmarks` (data/benchmarks.py BENCHMARKS)"""
    processes: int = 1
    """evaluation processes, one per GPU (accelerate launch; 1: in the stage's own process)"""
    limit: int | None = None
    """only the first N items of each benchmark (a smoke run); null: every item"""
    dry_run: bool = False
    """tiny random-weight models (make paper-dryrun): every report file says its numbers mean nothing"""

    def __post_init__(self):
        for i, b in enumerate(self.benchmarks):
            _one_of(f"benchmarks[{i}]", b, sorted(BENCHMARKS))
        _check_given(self, processes=COUNT, limit=COUNT)


@dataclass
class AblationsParams:
    """`ablations`: training settings compared, each a training run of `model` evaluated on `benchmark`."""

    model: str = "llava_onevision_7b"
    """the model whose policy is trained again"""
    benchmark: str = "videomme"
    """the benchmark each ablation's policy is evaluated on (CaCoVID at every retention ratio)"""
    runs: dict = field(default_factory=dict)
    """name -> the `policy.train` settings it changes (PolicyTrainConfig fields); empty: no ablation runs"""

    def __post_init__(self):
        _one_of("benchmark", self.benchmark, sorted(BENCHMARKS))
        for name, changes in self.runs.items():
            if not isinstance(changes, dict):
                raise KitInputError(f"runs.{name}: expected a mapping of policy.train settings, got {changes!r}")


@dataclass
class BenchmarkEntry:
    """`benchmarks.<name>` (a key of benchmarks.BENCHMARKS): where the benchmark is on disk."""

    annotations: str | None = None
    """the annotation file or folder (data/benchmarks.py documents each layout)"""
    video_root: str | None = None
    """the benchmark's video folder"""
    max_new_tokens: int | None = None
    """this benchmark's generation length where its lmms-eval task differs from `evaluation.max_new_tokens`"""

    def __post_init__(self):
        _check_given(self, max_new_tokens=COUNT)


@dataclass
class EvaluationParams:
    """`evaluation`: the settings every evaluation run shares. The block also holds the registry's method settings
    (compare.registry.MethodSettings fields, by their own names), checked by that dataclass."""

    retention_ratios: list[float] | None = None
    """the main table's retention ratios (a run takes one, --retention)"""
    methods: list[str] | None = None
    """the main table's methods (keys of the method registry; a run takes one, --method)"""
    imp_ratio: float | None = None
    """CaCoVID's share of each frame's budget given to the policy's top-k"""
    answer_mode: str | None = None
    """generate (lmms-eval's, the paper's) or loglikelihood (the kit's option scoring)"""
    max_new_tokens: int | None = None
    """greedy generation length"""
    batch_size: int | None = None
    """items answered together"""
    seed: int | None = None
    """the random baseline's masks"""
    prompt_template: str | None = None
    """overrides the model's chat template"""
    efficiency_items: int | None = None
    """also time selection and prefill on the first N items (0: not)"""
    timing_repeats: int | None = None
    """median of this many runs per timed item"""

    def __post_init__(self):
        _one_of("answer_mode", self.answer_mode, ANSWER_MODES)
        for i, method in enumerate(self.methods or []):
            _one_of(f"methods[{i}]", method, [m.key for m in registry.METHODS])
        _check_given(self, retention_ratios=RATIO, imp_ratio=RATIO, max_new_tokens=COUNT, batch_size=COUNT, seed=SEED,
                     efficiency_items=SEED, timing_repeats=COUNT)


@dataclass
class EfficiencyParams:
    """`efficiency`: the efficiency table's runs (docs/method.md §6)."""

    retention: float | None = None
    """the retention ratio every method is timed at (the paper's 25%)"""
    benchmark: str | None = None
    """the benchmark whose first questions are timed"""
    items: int | None = None
    """questions timed"""
    repeats: int | None = None
    """median of this many runs per question, after warm-up"""
    methods: list[str] | None = None
    """the methods timed (keys of the method registry)"""
    memory_frames: int = 32
    """the selection-memory table's frames (LLaVA-OneVision-7B's LLM; the paper's 32)"""
    memory_tokens_per_frame: int = 196
    """the selection-memory table's video tokens a frame (a square: LLaVA-OneVision's 14 x 14)"""

    def __post_init__(self):
        _one_of("benchmark", self.benchmark, sorted(BENCHMARKS))
        for i, method in enumerate(self.methods or []):
            _one_of(f"methods[{i}]", method, [m.key for m in registry.METHODS])
        _check_given(self, retention=RATIO, items=COUNT, repeats=COUNT, memory_frames=COUNT,
                     memory_tokens_per_frame=COUNT)


def method_setting_names() -> list[str]:
    """The registry.MethodSettings fields an `evaluation` block may set (CaCoVID's imp_ratio and seed are run settings)."""
    return [f.name for f in dataclasses.fields(registry.MethodSettings) if f.name not in ("cacovid_rule", "seed")]


def check_evaluation_block(block, where: str = "evaluation") -> None:
    """An `evaluation` block: every key an EvaluationParams or a registry.MethodSettings field (an unknown key is
    refused with the valid ones listed), each value of its type and range."""
    if not isinstance(block, dict):
        raise KitInputError(f"{where}: expected a mapping of settings, got {block!r}")
    run_keys = [f.name for f in dataclasses.fields(EvaluationParams)]
    setting_keys = method_setting_names()
    unknown = sorted(set(block) - set(run_keys) - set(setting_keys))
    if unknown:
        raise KitInputError(f"{where}.{unknown[0]}: unknown parameter; valid: {', '.join(sorted(run_keys + setting_keys))}")
    parse(EvaluationParams, {k: v for k, v in block.items() if k in run_keys}, where)
    parse(registry.MethodSettings, {k: v for k, v in block.items() if k in setting_keys}, where)


def check_gpu_params(params: dict) -> None:
    """The blocks of a GPU-profile params file this command reads, each parsed into its dataclass; the blocks of other
    commands only named. One-line errors `block.key: problem`."""
    known = ("num_frames", "models", "benchmarks", "evaluation", "efficiency", "run", "ablations") + BLOCKS_OF_OTHER_COMMANDS
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise KitInputError(f"{unknown[0]}: unknown block; valid: {', '.join(known)}")
    frames = params.get("num_frames")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise KitInputError(f"num_frames: {frames!r}, expected a whole number of at least 1")
    for block, cls in (("models", ModelEntry), ("benchmarks", BenchmarkEntry)):
        entries = params.get(block) or {}
        if not isinstance(entries, dict):
            raise KitInputError(f"{block}: expected a mapping of name -> entry, got {entries!r}")
        for name, entry in entries.items():
            if block == "benchmarks" and name not in BENCHMARKS:
                raise KitInputError(f"benchmarks.{name}: not a benchmark; valid: {', '.join(sorted(BENCHMARKS))}")
            parse(cls, entry, f"{block}.{name}")
    check_evaluation_block(params.get("evaluation") or {})
    if params.get("run") is not None:
        run = parse(RunParams, params["run"], "run")
        for i, name in enumerate(run.models):
            _one_of(f"run.models[{i}]", name, sorted(params.get("models") or {}))
        for i, name in enumerate(run.benchmarks):
            _one_of(f"run.benchmarks[{i}]", name, sorted(params.get("benchmarks") or {}))
    if params.get("efficiency") is not None:
        parse(EfficiencyParams, params["efficiency"], "efficiency")
    if params.get("ablations") is not None:
        ablations = parse(AblationsParams, params["ablations"], "ablations")
        _one_of("ablations.model", ablations.model, sorted(params.get("models") or {}))
        if ablations.runs:
            from cacovid_lib.method.train_loop import PolicyTrainConfig

            train = (params.get("policy") or {}).get("train") or {}
            for name, changes in ablations.runs.items():  # a misspelled setting is refused before any training
                parse(PolicyTrainConfig, {**{k: v for k, v in train.items() if k != "steps" or v is not None}, **changes},
                      f"ablations.runs.{name}")


def read_gpu_params(path) -> dict:
    """A GPU-profile params file (paper/params.yaml), checked by check_gpu_params: its mapping as written, or one line
    `<file>: block.key: problem`."""
    params = read_params(path)
    try:
        check_gpu_params(params)
    except KitInputError as err:
        raise KitInputError(f"{path}: {err}") from None
    return params


DEFAULTS = {"num_frames": 32, "dtype": "bfloat16", "attn_implementation": "sdpa", "imp_ratio": 0.5, "answer_mode": "generate",
            "max_new_tokens": 16, "batch_size": 1, "efficiency_items": 0, "timing_repeats": 10, "seed": 0}


def method_settings(evaluation: dict) -> dict:
    """make_selector's keyword settings from a params file's `evaluation` block: its registry.MethodSettings fields
    (fastv_layer, temporal_merge_threshold, fastvid_threshold, ...), by their own names; imp_ratio and seed are run
    settings of their own."""
    fields = set(method_setting_names())
    return {k: v for k, v in evaluation.items() if k in fields}
