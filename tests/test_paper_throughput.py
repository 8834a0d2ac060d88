"""The GPU-hour estimate of the paper's pipeline: its parts follow the FLOPs model and the pass's run count."""
import pytest

from cacovid_lib.compare.efficiency import prefill_flops
from cacovid_lib.paper.throughput import (
    BENCHMARK_ITEMS, MODELS, main_table_gpu_hours, seconds_per_question, seconds_per_training_item, training_gpu_hours
)


def test_a_question_costs_one_full_prefill_plus_each_methods_kept_prefills():
    model = MODELS["llava_onevision_7b"]
    parts = seconds_per_question(model, ratios=(0.25,), effective_tflops=1.0, video_decode_s=0.0, fastv_layers=0)
    full = prefill_flops(model.shape, model.video_tokens + 160)
    kept = prefill_flops(model.shape, int(0.25 * model.video_tokens) + 160)
    policy = prefill_flops(model.shape, model.video_tokens + 160, layers=1)
    assert parts["runs"] == 1 + model.methods
    assert parts["prefill_s"] == pytest.approx((full + model.methods * kept + policy) / 1e12)


def test_gpu_hours_count_every_question_and_halve_nothing_on_8_gpus():
    table = main_table_gpu_hours()
    assert (table["questions"] == sum(BENCHMARK_ITEMS.values())).all()
    assert ((table["gpu_hours"] / table["hours_on_8_gpus"]).round(1) == 8.0).all()
    slower = main_table_gpu_hours(video_decode_s=3.0)
    assert (slower["gpu_hours"] > table["gpu_hours"]).all()


def test_training_hours_grow_with_the_items_and_the_rollouts():
    assert training_gpu_hours(20000)["gpu_hours"].iloc[0] == pytest.approx(2 * training_gpu_hours(10000)["gpu_hours"].iloc[0], rel=1e-3)
    few = seconds_per_training_item(MODELS["llava_onevision_7b"], rollouts=8)["iterations_s"]
    many = seconds_per_training_item(MODELS["llava_onevision_7b"], rollouts=32)["iterations_s"]
    assert many > few
