"""world_stats: per-question token shares, frame visibility and adjacent-frame similarity from the ground truth."""
import numpy as np

from cacovid_lib.embedded.world import WorldSpec, build_world
from cacovid_lib.embedded.world_stats import (
    adjacent_cell_similarity, question_token_shares, visible_frames, world_stats
)


def test_question_token_share_counts_the_asked_objects_cells():
    spec = WorldSpec(num_rendered_frames=8)  # 8 sampled of 8 rendered: frame j is rendered frame j
    layout = {"objects": [{"cells": [0] * 8}, {"cells": [1, 1, -1, -1, -1, -1, -1, -1]}], "clutter": []}
    items = [{"path": "v", "target_object": 0}, {"path": "v", "target_object": 1}]
    shares = question_token_shares(items, {"v": layout}, 8, spec)  # of 8 frames x 6 x 6 tokens
    assert np.allclose(shares, [8 / 288, 2 / 288])
    assert visible_frames(layout["objects"][1]["cells"], 8, spec) == 2


def test_adjacent_similarity_separates_still_and_changing_cells():
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 4, axis=0)
    repeat, cosine = adjacent_cell_similarity(still, 4)
    assert repeat == 1.0 and cosine > 0.99
    noise = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    repeat, cosine = adjacent_cell_similarity(noise, 4)
    assert repeat == 0.0 and abs(cosine) < 0.2


def test_world_stats_of_a_rendered_world(tmp_path):
    build_world(tmp_path, seed=0, num_videos={"test": 5}, workers=1)
    stats = world_stats(tmp_path, "test", num_frames=8, pixel_videos=2)
    assert stats["video_tokens"] == 288 and stats["questions"] == 20 and stats["objects_per_video"] == 6
    assert stats["clutter_per_video"] == 6 and stats["distinct_things_per_video"] >= 6 + 6 + 4  # 4..8 background regions
    assert 0 < stats["question_token_share_median"] <= 8 / 288  # one cell in at most all 8 frames, of 288 tokens
    assert stats["asked_objects_never_sampled"] == 0.0
    assert all(isinstance(v, (int, float, str)) for v in stats.values())  # flat, JSON-ready


def test_frame_cells_cut_frames_into_token_order():
    from cacovid_lib.embedded.world import frame_cells

    frames = np.arange(2 * 3 * 4 * 4 * 3, dtype=np.int64).reshape(2, 3, 4, 4, 3)  # 2 videos, 3 frames of 2 x 2 cells
    cells = frame_cells(frames, grid=2)  # (2, 3*2*2, 2, 2, 3)
    assert cells.shape == (2, 12, 2, 2, 3)
    assert (cells[1, 4 + 1] == frames[1, 1, :2, 2:]).all()  # video 1, frame 1, cell (row 0, column 1)
    assert (cells[0, 11] == frames[0, 2, 2:, 2:]).all()  # the last cell of the last frame
