"""cacovid_lib: the CaCoVID reproducibility kit's library, in rooms by job (imports run downhill only):

- method/: CaCoVID itself, model-agnostic (torch only): policy, sampling, grpo, selection, train_loop, health
- data/: the Video-R1 item schema, video reading, Video-R1 training JSON, the real benchmarks' loaders
- models/: the VideoLLM interface and its LLaVA-OneVision and Qwen2.5-VL adapters, loading, preprocessing, rewards
- embedded/: the embedded default: the rendered world, its statistics, tokenizer and small video LLM
- compare/: the comparison harness: keep rules and the one method registry, baselines, evaluation, intervals,
  benchmark sweep, efficiency, audit, the GPU efficiency profile
- pipeline/: the pipeline's infrastructure: the stage runner, typed params, paths, code deps, metrics, `make verify`
- stages/: the embedded pipeline's stages as library calls, one module per stage with its figure
- cli/: the paper's command-line tools on real video LLMs (benchmark evaluation, blind filtering, training launcher)

The floor, open to every room: io_utils (one-line KitInputError, atomic writes, JSON) and cpu_pins (the environment
that makes floats the same on every x86-64 AVX2 CPU). Nothing in method/ … compare/ imports pipeline/, stages/ or cli/.
"""
