"""cacovid_lib: the CaCoVID reproducibility kit's library.

Modules, one job each:
- world: render the embedded video-QA world (MP4 + Video-R1 JSON + per-token layouts)
- video_io: read videos with decord (uniform frame sampling), write them with PyAV
- data: a split with its videos decoded once
- tokenizer: the small video LLM's word-level tokenizer
- small_vlm: build and train the small LLaVA-OneVision video LLM
- adapter: video -> video tokens, prompt -> embeddings, compressed forward, answer scoring
- evaluation: accuracy under any keep-mask rule
- stage: run a dvc.yaml stage's notebook with papermill and params.yaml
- io_utils: atomic writes and the one-line KitInputError
"""
