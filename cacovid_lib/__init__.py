"""cacovid_lib: the CaCoVID reproducibility kit's library, in rooms by job (imports run downhill only):

- io_utils: the floor: the one-line KitInputError, atomic writes, JSON / JSON-lines, the CLIs' error handling
- method/: CaCoVID itself, model-agnostic (torch only): policy, sampling, grpo, selection, train_loop, health
- data/: the Video-R1 item schema, video reading, Video-R1 training JSON, the real benchmarks' loaders
- models/: the VideoLLM interface and its LLaVA-OneVision and Qwen2.5-VL adapters, loading, preprocessing, rewards
- embedded/: the embedded default: the rendered world, its statistics, tokenizer and small video LLM
- compare/: the comparison harness: keep rules and the one method registry, baselines, evaluation, intervals,
  benchmark sweep, efficiency, audit, the GPU efficiency profile
- pipeline/: the DVC stages' runner and library (typed params, paths, metrics, figures, report, ablations, policy
  training) and the command-line entry points; nothing outside pipeline/ imports it
"""
