"""The GPU profile's code paths on CPU, with tiny random models of the real classes (LLaVA-OneVision, Qwen2.5-VL)
saved to disk and reloaded: benchmark evaluation streaming real MP4s of a VideoMME-format fixture (every method
kind, both answer modes, resume after a kill, the CLI and its tables), the chat template, policy training on a
Video-R1 fixture through the launcher, and the GPU profile's config files."""
import json
import math
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import QWEN_FRAME, ROOT, uncached_generate_pruned_inside

from cacovid_lib.compare.efficiency import prefill
from cacovid_lib.compare.evaluation import option_scores
from cacovid_lib.compare.keep import Selection
from cacovid_lib.data.benchmarks import BENCHMARKS, accuracy_by_category
from cacovid_lib.data.video_io import write_video
from cacovid_lib.embedded.small_vlm import SmallVLMConfig
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, save_policy
from cacovid_lib.models.loader import CHATML, load_video_llm
from cacovid_lib.cli import benchmark_eval
from cacovid_lib.paper import answering
from cacovid_lib.paper import params as answering_params
from cacovid_lib.cli.benchmark_eval import (
    chat_template, collect, efficiency_profile, evaluate_benchmark, prompt_items,
    prompt_template, read_results
)

NUM_FRAMES = 4
_LLAVA = SmallVLMConfig()  # conftest's llava_dir keeps the default frame: image_size / patch_size patches a side,
LLAVA_TOKENS = NUM_FRAMES * (_LLAVA.image_size // _LLAVA.patch_size // 2) ** 2  # pooled 2x2 to the video tokens
PROFILE_KEYS = {"items", "repeats", "device", "video_tokens", "selection_ms", "prefill_ms", "prefill_all_tokens_ms",
                "kept_tokens"}
FIELDS = {"problem_id", "benchmark", "category", "method", "retention", "answer_mode", "predicted", "answer", "correct",
          "kept_tokens", "video_tokens", "output", "select_ms", "seconds"}


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is many times faster than two on a machine whose cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llava(llava_dir):
    return load_video_llm(llava_dir, NUM_FRAMES)


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return load_video_llm(qwen_dir, NUM_FRAMES, frame_size=QWEN_FRAME)


def policy_folder(vlm, folder):
    save_policy(CompressionPolicy.from_llm(vlm.language_model, seed=0), folder, "tiny")
    return folder


@pytest.fixture(scope="module")
def llava_policy(llava, tmp_path_factory):
    from cacovid_lib.method.policy import load_policy

    folder = policy_folder(llava, tmp_path_factory.mktemp("llava_policy"))
    return folder, load_policy(folder, llava.language_model).eval()


@pytest.fixture(scope="module")
def videomme(tmp_path_factory):
    """A VideoMME annotation (records as in lmms-lab/Video-MME's parquet) with three tiny MP4s."""
    root = tmp_path_factory.mktemp("videomme")
    rng = np.random.default_rng(0)
    records = []
    for n, (duration, answer) in enumerate([("short", "B"), ("short", "C"), ("medium", "A")], 1):
        write_video(root / "data" / f"vid{n}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
        records.append({"videoID": f"vid{n}", "duration": duration, "question_id": f"00{n}-1", "task_type": "Counting Problem",
                        "question": f"what colour is the circle in video {n} ?",
                        "options": ["A. red circle", "B. blue square", "C. green cross", "D. red ring"], "answer": answer})
    (root / "videomme.json").write_text(json.dumps(records))
    items = BENCHMARKS["videomme"](root / "videomme.json", root / "data", check_videos=True)
    return root / "videomme.json", root / "data", items


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_profile(profile: dict, vlm, items: int, kept: int, repeats: int = 1) -> None:
    """An efficiency profile holds every field, for the items and repeats asked, with each time measured."""
    assert set(profile) == PROFILE_KEYS
    assert (profile["items"], profile["repeats"], profile["video_tokens"]) == (items, repeats, vlm.num_video_tokens)
    assert profile["kept_tokens"] == kept
    assert all(math.isfinite(profile[k]) for k in ("selection_ms", "prefill_ms", "prefill_all_tokens_ms"))


@pytest.fixture
def timings(monkeypatch):
    """The `repeats` of each median the efficiency profile takes (the real timing still runs)."""
    real, repeats = answering.median_ms, []
    monkeypatch.setattr(answering, "median_ms", lambda fn, n: repeats.append(n) or real(fn, n))
    return repeats


# ---- evaluation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer_mode", ["generate", "loglikelihood"])
def test_llava_all_random_cacovid_in_both_answer_modes(llava, llava_policy, videomme, tmp_path, answer_mode):
    _, _, items = videomme
    template_before = llava.prompt_template
    for method, kept in [("all", LLAVA_TOKENS), ("random", LLAVA_TOKENS // 4), ("cacovid", LLAVA_TOKENS // 4)]:
        out = tmp_path / f"{method}.jsonl"
        table = evaluate_benchmark(llava, items, method, 0.25, NUM_FRAMES, out, policy=llava_policy[1], batch_size=2,
                                   answer_mode=answer_mode, max_new_tokens=3)
        records = lines(out)
        assert [r["problem_id"] for r in records] == ["001-1", "002-1", "003-1"], method
        assert all(set(r) == FIELDS for r in records)
        assert [r["kept_tokens"] for r in records] == [kept] * 3, method
        assert [r["answer"] for r in records] == ["B", "C", "A"] and [r["category"] for r in records] == ["short", "short", "medium"]
        assert all(r["predicted"] in (None, "A", "B", "C", "D") and r["correct"] == (r["predicted"] == r["answer"]) for r in records)
        assert records[0]["retention"] == (1.0 if method == "all" else 0.25) and records[0]["answer_mode"] == answer_mode
        pd_equal(table, accuracy_by_category(items, [r["predicted"] for r in records]))
        assert set(table["category"]) == {"short", "medium", "overall", "mean over categories"}
    assert llava.prompt_template == template_before  # the chat template was the run's only
    if answer_mode == "loglikelihood":  # the prediction is the argmax of the kit's option scores, under the chat template
        views = prompt_items(items)
        _, video = answering.encode_items(llava, views)
        with prompt_template(llava, chat_template(llava)):
            scores = option_scores(llava, views, video, Selection(torch.ones(3, LLAVA_TOKENS, dtype=torch.bool)))
        assert [r["predicted"] for r in lines(tmp_path / "all.jsonl")] == ["ABCD"[i] for i in scores.argmax(-1)]


def pd_equal(a, b):
    import pandas as pd

    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_llava_attention_baselines_and_fastv_generation(llava, videomme, tmp_path, timings):
    _, _, items = videomme
    for method in ("fastv", "visionzip", "divprune", "uniform"):
        evaluate_benchmark(llava, items, method, 0.25, NUM_FRAMES, tmp_path / f"{method}.jsonl", max_new_tokens=2, fastv_layer=0)
        assert [r["kept_tokens"] for r in lines(tmp_path / f"{method}.jsonl")] == [LLAVA_TOKENS // 4] * 3, method
    # FastV's in-LLM pruning with nothing pruned decodes exactly as the plain generation
    views = prompt_items(items)
    _, video = answering.encode_items(llava, views)
    every = torch.ones(3, LLAVA_TOKENS, dtype=torch.bool)
    with prompt_template(llava, chat_template(llava)):
        assert uncached_generate_pruned_inside(llava, views, video, every, 0, 4) == llava.generate(views, video, every, max_new_tokens=4)
    profile = efficiency_profile(llava, items[:1], "fastv", 0.25, repeats=1, fastv_layer=0)
    check_profile(profile, llava, items=1, kept=LLAVA_TOKENS // 4)
    assert timings == [1, 1, 1]  # selection, prefill with the kept tokens, prefill with every token


@pytest.mark.parametrize("backend", ["llava", "qwen"])
def test_the_registrys_new_methods_run_on_both_backends(backend, request, videomme, tmp_path):
    """FastVID, FlashVID, HoliTom and VidCom² need no LLaVA-only forward: each runs on both backends by its key, with
    the registry's settings from the params' evaluation block (method_settings), at exactly the budget."""
    vlm = request.getfixturevalue(backend)
    _, _, items = videomme
    settings = answering_params.method_settings({"fastv_layer": 0, "fastvid_threshold": 0.8, "answer_mode": "generate"})
    assert settings == {"fastv_layer": 0, "fastvid_threshold": 0.8}
    for method in ("fastvid", "flashvid", "holitom", "vidcom2"):
        evaluate_benchmark(vlm, items[:2], method, 0.25, NUM_FRAMES, tmp_path / f"{method}.jsonl", max_new_tokens=2,
                           answer_mode="loglikelihood", **settings)
        assert [r["kept_tokens"] for r in lines(tmp_path / f"{method}.jsonl")] == [vlm.num_video_tokens // 4] * 2, method
    with pytest.raises(KitInputError, match="method setting 'fastvid_treshold': unknown; known: fastv_layer, "):
        answering.make_selector(vlm, [], "fastvid", 0.25, fastvid_treshold=0.8)


@pytest.mark.parametrize("backend", ["llava", "qwen"])
@torch.no_grad()
def test_timed_prefill_is_the_plain_forward_at_the_last_position(backend, request, videomme, timings):
    vlm = request.getfixturevalue(backend)
    view = prompt_items(videomme[2][:1])[0]
    _, video = answering.encode_items(vlm, [view])
    keep = torch.zeros(1, vlm.num_video_tokens, dtype=torch.bool)
    keep[0, ::3] = True
    prompt = vlm.prompt(view)
    logits = prefill(vlm, prompt, video[0], Selection(keep))  # what efficiency_profile times
    torch.testing.assert_close(logits, vlm.forward_sequences([vlm.assemble(prompt, video[0], keep[0])])[:, -1])
    profile = efficiency_profile(vlm, videomme[2][:1], "random", 0.25, repeats=1)
    check_profile(profile, vlm, items=1, kept=vlm.num_video_tokens // 4)
    assert timings == [1, 1, 1]


def test_resume_skips_done_items_and_recovers_a_cut_off_line(llava, videomme, tmp_path):
    _, _, items = videomme
    out = tmp_path / "random.jsonl"
    first = evaluate_benchmark(llava, items, "random", 0.1, NUM_FRAMES, out, max_new_tokens=2)
    text = out.read_text()
    second = evaluate_benchmark(llava, items, "random", 0.1, NUM_FRAMES, out, max_new_tokens=2)
    assert out.read_text() == text  # nothing added: every item was done
    pd_equal(first, second)
    killed = text.splitlines(keepends=True)
    out.write_text(killed[0] + killed[1][:25])  # killed while writing the second record
    evaluate_benchmark(llava, items, "random", 0.1, NUM_FRAMES, out, max_new_tokens=2)
    again = lines(out)
    assert [r["problem_id"] for r in again] == ["001-1", "002-1", "003-1"]
    # item 1 was kept, items 2-3 redone with the same seeded masks (random draws per item index)
    assert [r["output"] for r in again] == [json.loads(line)["output"] for line in text.splitlines()]
    assert again[0] == json.loads(killed[0])
    with pytest.raises(KitInputError, match=r"random.jsonl: holds another run \(method 'random', this run 'uniform'\)"):
        evaluate_benchmark(llava, items, "uniform", 0.1, NUM_FRAMES, out)
    out.write_text("{broken\n" + text)
    with pytest.raises(KitInputError, match="random.jsonl: line 1 is not valid JSON"):
        read_results(out)


def test_qwen_cacovid_generate_and_unsupported_methods(qwen, videomme, tmp_path):
    _, _, items = videomme
    policy = CompressionPolicy.from_llm(qwen.language_model, seed=0).eval()
    table = evaluate_benchmark(qwen, items, "cacovid", 0.25, NUM_FRAMES, tmp_path / "q.jsonl", policy=policy, max_new_tokens=2)
    records = lines(tmp_path / "q.jsonl")
    assert [r["kept_tokens"] for r in records] == [int(0.25 * qwen.num_video_tokens)] * 3 and len(table)
    evaluate_benchmark(qwen, items, "all", 1.0, NUM_FRAMES, tmp_path / "qa.jsonl", answer_mode="loglikelihood")
    assert [r["kept_tokens"] for r in lines(tmp_path / "qa.jsonl")] == [qwen.num_video_tokens] * 3
    with pytest.raises(KitInputError) as err:
        evaluate_benchmark(qwen, items, "fastv", 0.25, NUM_FRAMES, tmp_path / "f.jsonl")
    assert str(err.value) == ("method 'fastv': not supported for Qwen2.5-VL; supported: all, cacovid, cacovid_release_rule, random, uniform, "
                              "divprune, fastvid, flashvid, holitom, vidcom2, prunevid, framefusion")
    with pytest.raises(KitInputError, match="method 'nope': not supported for Qwen2.5-VL; supported: all, cacovid, .*framefusion$"):
        answering.make_selector(qwen, [], "nope", 0.25)
    with pytest.raises(KitInputError, match="method cacovid: needs a trained policy"):
        evaluate_benchmark(qwen, items, "cacovid", 0.25, NUM_FRAMES, tmp_path / "c.jsonl")
    with pytest.raises(KitInputError, match="num_frames: 8, but the model was loaded for 4 frames"):
        evaluate_benchmark(qwen, items, "all", 1.0, 8, tmp_path / "c.jsonl")
    with pytest.raises(KitInputError, match="no lmms-eval 'prompt' field"):
        evaluate_benchmark(qwen, [{k: v for k, v in items[0].items() if k != "prompt"}], "all", 1.0, NUM_FRAMES, tmp_path / "c.jsonl")


def test_chat_template_renders_the_models_own_template(llava, qwen):
    tokenizer = llava.tokenizer
    assert chat_template(llava) == CHATML.format(content="<video>\n{problem}")  # no template in the tiny tokenizer
    # llava-hf's processor template renders typed content only (transformers' LLaVA-OneVision processor tests)
    tokenizer.chat_template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{% for content in message['content'] | "
        "selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}{% if message['role'] != 'assistant' %}"
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\\n' + content['text'] }}"
        "{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    try:
        assert chat_template(llava) == "<|im_start|>user <video>\n{problem}<|im_end|><|im_start|>assistant\n"
        tokenizer.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n{x}' + m['content'] + '<|im_end|>\\n' }}"
                                   "{% endfor %}{{ '<|im_start|>assistant\\n' }}")  # string content, literal braces
        template = chat_template(llava)
        assert template == "<|im_start|>user\n{{x}}<video>\n{problem}<|im_end|>\n<|im_start|>assistant\n"
        assert template.format(problem="Q?") == "<|im_start|>user\n{x}<video>\nQ?<|im_end|>\n<|im_start|>assistant\n"
    finally:
        tokenizer.chat_template = None
    assert chat_template(qwen) == CHATML.format(content="<|vision_start|><|video_pad|><|vision_end|>{problem}")


def test_cli_runs_summarises_and_collects_the_tables(llava_dir, llava_policy, videomme, tmp_path, monkeypatch, capsys):
    annotations, video_root, _ = videomme
    params = {"num_frames": NUM_FRAMES,
              "models": {"tiny_llava": {"path": str(llava_dir), "policy": str(llava_policy[0]), "dtype": "float32"}},
              "benchmarks": {"videomme": {"annotations": str(annotations), "video_root": str(video_root)}},
              "evaluation": {"imp_ratio": 0.5, "answer_mode": "generate", "max_new_tokens": 2, "fastv_layer": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    base = ["--params", "params.yaml", "--model", "tiny_llava", "--benchmark", "videomme", "--device", "cpu"]
    assert benchmark_eval.main(base + ["--method", "all"]) == 0
    assert benchmark_eval.main(base + ["--method", "cacovid", "--retention", "0.25", "--efficiency-items", "1",
                                       "--timing-repeats", "1"]) == 0
    summary = json.loads((tmp_path / "results/tiny_llava/videomme/cacovid-0.25.summary.json").read_text())
    assert summary["items"] == 3 and summary["mean_kept_tokens"] == LLAVA_TOKENS // 4 and 0 <= summary["score"] <= 1
    check_profile(summary["efficiency"], load_video_llm(llava_dir, NUM_FRAMES), items=1, kept=LLAVA_TOKENS // 4)
    assert "{problem}" in summary["prompt_template"]
    assert "score" in capsys.readouterr().out
    # explicit flags instead of a params file, the brief's form
    out = tmp_path / "explicit" / "r.jsonl"
    assert benchmark_eval.main(["--model", str(llava_dir), "--benchmark", "videomme", "--annotations", str(annotations),
                                "--video-root", str(video_root), "--method", "random", "--retention", "0.1", "--num-frames", "4",
                                "--dtype", "float32", "--device", "cpu", "--max-new-tokens", "2", "--out", str(out)]) == 0
    assert len(lines(out)) == 3 and out.with_suffix(".summary.json").is_file()
    main_table, efficiency = collect(tmp_path / "results")
    assert list(main_table["method"]) == ["all", "cacovid"] and list(efficiency["method"]) == ["cacovid"]
    assert benchmark_eval.main(["--collect", str(tmp_path / "results")]) == 0
    assert (tmp_path / "results/main_table.csv").is_file() and (tmp_path / "results/efficiency_table.csv").is_file()
    assert benchmark_eval.main(base + ["--method", "cacovid", "--retention", "0.25", "--params", "params.yaml",
                                       "--model", str(llava_dir)]) == 2  # a folder, not a key: no policy from params
    assert "--policy: required for method cacovid" in capsys.readouterr().err


def test_collect_makes_the_papers_share_of_the_all_tokens_average(tmp_path):
    def summary(method, retention, benchmark, score, **extra):
        path = tmp_path / f"{method}-{retention}-{benchmark}.summary.json"
        path.write_text(json.dumps({"model": "m", "answer_mode": "generate", "method": method, "retention": retention,
                                    "benchmark": benchmark, "score": score, **extra}))

    summary("all", 1.0, "videomme", 0.5)
    summary("all", 1.0, "mlvu_dev", 0.6)
    summary("cacovid", 0.25, "videomme", 0.45, efficiency={"selection_ms": 11.2, "prefill_ms": 53.2})
    summary("cacovid", 0.25, "mlvu_dev", 0.6)
    summary("divprune", 0.25, "videomme", 0.4)  # mlvu_dev not run yet: no average
    main_table, efficiency = collect(tmp_path)
    rows = main_table.set_index("method")
    assert rows.loc["all", "average"] == 55 and rows.loc["all", "share_of_all_tokens"] == 100
    assert rows.loc["cacovid", "average"] == 52.5 and rows.loc["cacovid", "share_of_all_tokens"] == round(100 * 52.5 / 55, 2)
    assert np.isnan(rows.loc["divprune", "average"]) and rows.loc["divprune", "videomme"] == 40
    assert efficiency.to_dict(orient="records") == [{"model": "m", "answer_mode": "generate", "method": "cacovid",
                                                     "retention": 0.25, "benchmark": "videomme", "selection_ms": 11.2,
                                                     "prefill_ms": 53.2}]
    with pytest.raises(KitInputError, match="no \\*.summary.json files"):
        collect(tmp_path / "nothing")


# ---- policy training on Video-R1 -------------------------------------------------------------------------
def test_video_r1_training_through_the_launcher_streams_each_batch_once(llava_dir, video_r1, tmp_path, monkeypatch):
    from cacovid_lib.data import video_r1 as video_r1_module
    from cacovid_lib.method.policy import load_policy
    from cacovid_lib.cli import launch_policy_training

    json_file, media_root = video_r1
    params = {"num_frames": NUM_FRAMES, "policy": {"reward": "multiple_choice", "epochs": 1, "train": {
        "steps": None, "items_per_step": 2, "num_generations": 4, "num_iter_for_item": 2, "lr": 0.01, "seed": 0}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    reads = []
    read_media = video_r1_module.read_media
    monkeypatch.setattr(video_r1_module, "read_media", lambda item, t: reads.append(item["problem_id"]) or read_media(item, t))
    rc = launch_policy_training.main(["--params", str(tmp_path / "params.yaml"), "--model", str(llava_dir),
                                      "--video-r1", str(json_file), "--media-root", str(media_root), "--out", str(tmp_path / "p")])
    assert rc == 0
    assert sorted(reads) == [0, 1, 2, 3]  # one epoch of 2 batches x 2 iterations: each video decoded once, images skipped
    config = json.loads((tmp_path / "p/policy_config.json").read_text())
    assert config["step"] == 4 and config["train_config"]["steps"] == 4 and not (tmp_path / "p/trainer_state.pt").exists()
    assert launch_policy_training.main(["--params", str(tmp_path / "params.yaml"), "--model", str(llava_dir),
                                        "--out", str(tmp_path / "none")]) == 2  # no --world, --video-r1 nor policy.video_r1
    vlm = load_video_llm(llava_dir, NUM_FRAMES)
    trained = load_policy(tmp_path / "p", vlm.language_model)
    initial = CompressionPolicy.from_llm(vlm.language_model, seed=0)
    assert any(not torch.equal(trained.state_dict()[k], v) for k, v in initial.state_dict().items() if "rotary" not in k)


def test_video_r1_generation_reward_on_qwen(qwen_dir, qwen, video_r1, tmp_path):
    from cacovid_lib.data.video_r1 import load_video_r1
    from cacovid_lib.method.train_loop import PolicyTrainConfig
    from cacovid_lib.stages.policy_training import VideoR1Task, train_policy_on_video_r1

    json_file, media_root = video_r1
    cfg = PolicyTrainConfig(steps=2, items_per_step=1, num_generations=4, num_iter_for_item=1, lr=0.01, seed=0)
    policy, state = train_policy_on_video_r1(qwen_dir, json_file, media_root, NUM_FRAMES, cfg, tmp_path / "q", reward="generation",
                                             limit=2, frame_size=QWEN_FRAME, progress=False)
    assert state.step == 2 and next(policy.parameters()).dtype == torch.float32
    assert all(np.isfinite(h["loss"]) for h in state.history)
    with pytest.raises(KitInputError, match="no video items of type multiple choice to train on"):
        train_policy_on_video_r1(qwen_dir, json_file, media_root, NUM_FRAMES, cfg, tmp_path / "x", reward="multiple_choice",
                                 limit=0, frame_size=QWEN_FRAME, progress=False)
    not_a_letter = [dict(it, solution="<answer>red</answer>") for it in load_video_r1(json_file, media_root, data_types="video")]
    with pytest.raises(KitInputError, match="item 0: reward multiple_choice needs multiple-choice items with options"):
        VideoR1Task(qwen, not_a_letter, reward="multiple_choice")
    assert list(VideoR1Task(qwen, not_a_letter, reward="generation").answers) == [-1] * 4


# ---- the GPU profile's files -------------------------------------------------------------------------------
def test_gpu_params_hold_the_release_hyper_parameters_and_the_accelerate_config_loads():
    from accelerate.commands.config.config_args import load_config_from_file

    from cacovid_lib.cli.launch_policy_training import train_config

    params = yaml.safe_load((ROOT / "paper" / "params.yaml").read_text())
    cfg, epochs = train_config(params, "paper/params.yaml", video_r1=True)
    assert (cfg.num_generations, cfg.sample_rate, cfg.min_sample_rate, cfg.max_sample_rate) == (32, 0.02, 0.01, 0.12)
    assert (cfg.group_size, cfg.max_group_prob, cfg.frame_ratio, cfg.eps_low, cfg.eps_high) == (2, 2.0, 0.125, 0.2, 0.28)
    assert (cfg.num_iter_for_item, cfg.lr, cfg.layer_lr_scale, cfg.weight_decay, cfg.grad_clip, cfg.kl_weight) == (5, 1e-6, 0.1, 0.01, 5.0, 0)
    assert epochs == 1 and params["num_frames"] == 32
    assert params["evaluation"]["retention_ratios"] == [0.25, 0.2, 0.15, 0.1] and params["evaluation"]["imp_ratio"] == 0.5
    assert set(params["benchmarks"]) == {"longvideobench", "mlvu_dev", "mlvu_test", "videomme"}
    assert set(params["models"]) == {"llava_onevision_7b", "qwen2_5_vl_3b"}
    accelerate = load_config_from_file(str(ROOT / "configs/accelerate_multi_gpu.yaml"))
    assert (accelerate.distributed_type, accelerate.num_processes, accelerate.mixed_precision) == ("MULTI_GPU", 8, "bf16")


# ---- bad input, refused before the model loads ------------------------------------------------------------
@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: every check below must come before it."""
    from cacovid_lib.models import loader

    def load_video_llm(*args, **kw):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(loader, "load_video_llm", load_video_llm)


def gpu_params(llava_dir, llava_policy, videomme, **evaluation) -> dict:
    annotations, video_root, _ = videomme
    return {"num_frames": NUM_FRAMES,
            "models": {"tiny_llava": {"path": str(llava_dir), "policy": str(llava_policy[0]), "dtype": "float32"}},
            "benchmarks": {"videomme": {"annotations": str(annotations), "video_root": str(video_root)}},
            "evaluation": {"imp_ratio": 0.5, "answer_mode": "generate", "max_new_tokens": 2, "fastv_layer": 0, **evaluation},
            "policy": {"reward": "generation"}}  # another command's block: named, not read here


def refused(argv, capsys) -> str:
    """The one-line error of a CLI run that must fail with status 2."""
    assert benchmark_eval.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err[len("error: "):]


def test_the_real_gpu_params_file_validates():
    params = benchmark_eval.read_gpu_params(ROOT / "paper" / "params.yaml")
    assert params["evaluation"]["imp_ratio"] == 0.5


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["evaluation"].update(imp_raito=0.7),
     r"params.yaml: evaluation.imp_raito: unknown parameter; valid: .*imp_ratio.*max_new_tokens.*temporal_merge_threshold"),
    (lambda p: p["evaluation"].update(max_new_token=8), r"params.yaml: evaluation.max_new_token: unknown parameter; valid: "),
    (lambda p: p["models"]["tiny_llava"].update(dtpye="bfloat16"),
     r"params.yaml: models.tiny_llava.dtpye: unknown parameter; valid: attn_implementation, dtype, frame_size, path, "),
    (lambda p: p["evaluation"].update(batch_size="eight"), r"params.yaml: evaluation.batch_size: expected a whole number, got 'eight'"),
    (lambda p: p["evaluation"].update(batch_size=0), r"params.yaml: evaluation.batch_size: 0 must be at least 1"),
    (lambda p: p["evaluation"].update(retention_ratios=[0.25, 1.5]), r"params.yaml: evaluation.retention_ratios\[1\]: 1.5 must be in \(0, 1\]"),
    (lambda p: p["evaluation"].update(fastv_layer=-1), r"params.yaml: evaluation.fastv_layer: -1 must be at least 0"),
    (lambda p: p["models"]["tiny_llava"].update(dtype="bf16"), r"params.yaml: models.tiny_llava.dtype: 'bf16' is not valid; valid: float32, "),
    (lambda p: p["benchmarks"].update(videome={}), r"params.yaml: benchmarks.videome: not a benchmark; valid: longvideobench, "),
    (lambda p: p.update(num_frame=8), r"params.yaml: num_frame: unknown block; valid: num_frames, models, "),
])
def test_a_bad_params_file_is_one_line_before_the_model_loads(edit, message, llava_dir, llava_policy, videomme, tmp_path,
                                                               monkeypatch, capsys, no_model_load):
    params = gpu_params(llava_dir, llava_policy, videomme)
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    argv = ["--params", "params.yaml", "--model", "tiny_llava", "--benchmark", "videomme", "--method", "random",
            "--retention", "0.25", "--device", "cpu"]
    assert re.match(message, refused(argv, capsys))
    assert not (tmp_path / "results").exists()  # nothing written


def test_bad_arguments_are_one_line_before_the_model_loads(llava_dir, qwen_dir, llava_policy, videomme, tmp_path, monkeypatch,
                                                          capsys, no_model_load):
    params = gpu_params(llava_dir, llava_policy, videomme)
    params["models"]["placeholder"] = {"path": "/path/to/llava-onevision-qwen2-7b-ov-hf"}
    params["models"]["tiny_qwen"] = {"path": str(qwen_dir)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    base = ["--params", "params.yaml", "--benchmark", "videomme", "--device", "cpu"]
    llava = base + ["--model", "tiny_llava"]
    cases = [
        (llava + ["--method", "fastvv", "--retention", "0.25"], "--method fastvv: not a key of the method registry; valid: all, "),
        (llava + ["--method", "random"], "--retention: required for method random"),
        (["--params", "params.yaml", "--model", "tiny_llava", "--benchmark", "videome", "--method", "all"],
         "--benchmark videome: not a benchmark; valid: longvideobench, mlvu_dev, mlvu_test, mvbench, videomme"),
        (base + ["--model", "tiny_lava", "--method", "all"],
         "--model tiny_lava: not a key of `models` in params.yaml (valid: placeholder, tiny_llava, tiny_qwen) and not a model folder"),
        (base + ["--model", "placeholder", "--method", "all"],
         "params.yaml: models.placeholder.path: /path/to/llava-onevision-qwen2-7b-ov-hf is a placeholder; replace the placeholder"),
        (llava + ["--method", "all", "--video-root", "/path/to/Video-MME/data"], "--video-root: /path/to/Video-MME/data is a placeholder"),
        (llava + ["--method", "all", "--video-root", str(tmp_path / "no_videos")], f"{tmp_path / 'no_videos'}: video folder not found"),
        (base + ["--model", "tiny_qwen", "--method", "fastv", "--retention", "0.25"],
         "method 'fastv': not supported for Qwen2.5-VL; supported: all, cacovid, "),
        (base + ["--model", str(llava_dir), "--method", "cacovid", "--retention", "0.25"], "--policy: required for method cacovid"),
        (llava + ["--method", "cacovid", "--retention", "0.25", "--policy", str(tmp_path)], f"{tmp_path}: not a policy checkpoint"),
    ]
    for argv, message in cases:
        assert refused(argv, capsys).startswith(message), argv
    (tmp_path / "empty").mkdir()
    assert refused(llava + ["--method", "all", "--video-root", str(tmp_path / "empty")], capsys).startswith(
        f"{tmp_path / 'empty'}: none of the 3 items' videos is here")
    for flag, value, message in [("--limit", "-1", "-1 must be at least 1"), ("--limit", "0", "0 must be at least 1"),
                                 ("--retention", "1.5", "1.5 must be in (0, 1]"), ("--retention", "0", "0 must be in (0, 1]"),
                                 ("--batch-size", "eight", "'eight' is not a whole number")]:
        with pytest.raises(SystemExit) as exit_:
            benchmark_eval.main(llava + ["--method", "random", "--retention", "0.25", flag, value])
        assert exit_.value.code == 2 and f"argument {flag}: {message}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "params.yaml"]  # no results folder, nothing written


def test_an_existing_out_file_is_never_emptied(llava_dir, llava_policy, videomme, tmp_path, monkeypatch, capsys, no_model_load):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(gpu_params(llava_dir, llava_policy, videomme)))
    monkeypatch.chdir(tmp_path)
    argv = ["--params", "params.yaml", "--model", "tiny_llava", "--benchmark", "videomme", "--method", "random",
            "--retention", "0.25", "--device", "cpu", "--out"]
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, no newline")
    assert refused(argv + [str(notes)], capsys) == (f"{notes}: line 1 is not a results record of this kit; choose another "
                                                    f"output file (this one is left as it is)")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"problem_id": "001-1", "method": "uniform", "retention": 0.25, "answer_mode": "generate"}))
    assert refused(argv + [str(other)], capsys).startswith(f"{other}: holds another run (method 'uniform', this run 'random')")
    assert notes.read_text() == "my notes, no newline" and other.read_text().endswith("}")  # both as they were
    assert refused(argv + [str(tmp_path)], capsys) == f"{tmp_path}: is a folder; the output is a results file (JSON lines)"
    # a record cut off by a kill passes (it is dropped and redone by the run)
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"problem_id": "001-1", "met')
    benchmark_eval.check_results_file(cut, benchmark_eval.run_fields("random", 0.25, "generate"))


def copy_of_videomme(videomme, tmp_path):
    import shutil

    annotations, video_root, _ = videomme
    root = tmp_path / "videomme"
    shutil.copytree(video_root, root / "data")
    shutil.copy(annotations, root / "videomme.json")
    return root / "videomme.json", root / "data"


def test_an_unreadable_video_is_skipped_counted_and_retried(llava, llava_dir, videomme, tmp_path, capsys):
    annotations, video_root = copy_of_videomme(videomme, tmp_path)
    good = (video_root / "vid3.mp4").read_bytes()
    (video_root / "vid2.mp4").unlink()  # missing
    (video_root / "vid3.mp4").write_bytes(good[:200])  # cut off: undecodable
    items = BENCHMARKS["videomme"](annotations, video_root)
    out = tmp_path / "random.jsonl"
    table = evaluate_benchmark(llava, items, "random", 0.25, NUM_FRAMES, out, max_new_tokens=1, batch_size=2)
    assert [r["problem_id"] for r in lines(out)] == ["001-1"]  # only the answered item is done
    assert [s["problem_id"] for s in table.attrs["skipped_videos"]] == ["002-1", "003-1"]
    assert "vid2.mp4: video file not found" in table.attrs["skipped_videos"][0]["problem"]
    assert table[table["category"] == "overall"]["n"].tolist() == [1]
    # through the CLI: warned before the model loads, counted and listed in the summary
    argv = ["--model", str(llava_dir), "--benchmark", "videomme", "--annotations", str(annotations), "--video-root",
            str(video_root), "--method", "random", "--retention", "0.25", "--num-frames", str(NUM_FRAMES), "--dtype", "float32",
            "--device", "cpu", "--max-new-tokens", "1", "--out", str(out)]
    assert benchmark_eval.main(argv) == 0
    err = capsys.readouterr().err
    assert "1 of the 3 items' videos are missing" in err and "skipped 2 of 3 items whose video could not be read" in err
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert (summary["items"], summary["answered"], summary["skipped"]) == (3, 1, 2)
    assert [s["video"].rsplit("/", 1)[1] for s in summary["skipped_videos"]] == ["vid2.mp4", "vid3.mp4"]
    # the videos mended, a rerun answers the skipped items and keeps the done one
    first = lines(out)[0]
    (video_root / "vid3.mp4").write_bytes(good)
    (video_root / "vid2.mp4").write_bytes(good)
    table = evaluate_benchmark(llava, items, "random", 0.25, NUM_FRAMES, out, max_new_tokens=1)
    assert [r["problem_id"] for r in lines(out)] == ["001-1", "002-1", "003-1"] and lines(out)[0] == first
    assert table.attrs["skipped_videos"] == []
