"""The video-token geometry (compare/token_geometry.py) on hand-built tokens whose cosines are known."""
import numpy as np
import pytest
import torch

from cacovid_lib.compare.token_geometry import cosine_samples, pair_cosines, token_geometry


def test_pair_kinds_and_known_cosines():
    # tokens 0, 1: object 0 along x (same object: no pair kind); 2: object 1 along y; 3, 4: background at 60° apart
    tokens = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0.5 * 3**0.5, 0.5]])
    labels = np.array([0, 0, 1, -1, -1])
    pairs = pair_cosines(tokens, labels)
    assert pairs["object_pair"].tolist() == pytest.approx([0.0, 0.0])  # (0, 2), (1, 2); (0, 1) is one object
    assert len(pairs["object_vs_non_object"]) == 3 * 2
    assert pairs["non_object_pair"].tolist() == pytest.approx([0.5])  # one pair, the token with itself is none


def test_token_geometry_averages_over_videos_and_reports_norms():
    one_cone = torch.tensor([[[1.0, 0], [0, 1.0], [3.0, 0.1], [3.0, 0.0]]])  # two objects, two near-equal background
    spread = torch.tensor([[[1.0, 0], [0, 1.0], [1.0, 0.0], [-1.0, 0.0]]])   # background pair opposite
    labels = np.array([[0, 1, -1, -1]])
    out = token_geometry(torch.cat([one_cone, spread]), np.concatenate([labels, labels]))
    assert out["num_videos"] == 2
    assert out["object_pair_cosine"] == pytest.approx(0.0)
    cone = float(torch.nn.functional.cosine_similarity(one_cone[0, 2], one_cone[0, 3], dim=0))
    assert out["non_object_pair_cosine"] == pytest.approx((cone + -1.0) / 2)
    assert out["object_token_norm"] == pytest.approx(1.0)
    assert out["non_object_token_norm"] == pytest.approx((one_cone[0, 2].norm().item() + 3.0 + 1.0 + 1.0) / 4)


def test_cosine_samples_caps_each_kind_per_video():
    tokens = torch.randn(3, 20, 8, generator=torch.Generator().manual_seed(0))
    labels = np.tile(np.array([0] * 5 + [1] * 5 + [-1] * 10), (3, 1))
    samples = cosine_samples(tokens, labels, per_video=7)
    assert samples.groupby("kind").size().to_dict() == {"non_object_pair": 21, "object_pair": 21, "object_vs_non_object": 21}
    assert samples["cosine"].between(-1, 1).all()


def test_other_cell_pairs_leave_out_a_cell_seen_again_in_another_frame():
    # two frames of two cells: cell 0 is background in both frames (the same token), cell 1 an object, then background
    tokens = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [-1.0, 0.0]])
    labels = np.array([-1, 0, -1, -1])
    pairs = pair_cosines(tokens, labels, cells_per_frame=2)
    assert sorted(pairs["non_object_pair"].tolist()) == pytest.approx([-1.0, -1.0, 1.0])  # (0, 2) is cell 0 twice
    assert sorted(pairs["non_object_pair_other_cell"].tolist()) == pytest.approx([-1.0, -1.0])  # (0, 3), (2, 3)
    assert "non_object_pair_other_cell" not in pair_cosines(tokens, labels)
    out = token_geometry(tokens[None], labels[None], cells_per_frame=2)
    assert out["non_object_pair_cosine"] == pytest.approx(-1 / 3) and out["non_object_pair_other_cell_cosine"] == pytest.approx(-1.0)


def test_nearest_cosines_say_how_far_objects_stand_out():
    from cacovid_lib.compare.token_geometry import nearest_cosines

    # two frames of two cells; cell 0 background (the same token in both frames), cell 1 an object, then background
    tokens = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [0.6, 0.8]])
    labels = np.array([-1, 0, -1, -1])
    near = nearest_cosines(tokens, labels)
    assert near["object_nearest_non_object"].tolist() == pytest.approx([0.8])  # token 1's nearest is token 3
    assert near["non_object_nearest_non_object"].tolist() == pytest.approx([1.0, 1.0, 0.6])
    other_cell = nearest_cosines(tokens, labels, cells_per_frame=2)["non_object_nearest_non_object"]
    assert other_cell.tolist() == pytest.approx([0.6, 0.6, 0.6])  # cell 0 no longer finds itself in the other frame
    out = token_geometry(tokens[None], labels[None], cells_per_frame=2)
    assert out["object_nearest_non_object_cosine"] == pytest.approx(0.8)
    assert out["non_object_nearest_non_object_cosine"] == pytest.approx(0.6)
    lonely = nearest_cosines(torch.tensor([[1.0, 0], [0, 1.0]]), np.array([0, -1]))  # one non-object token: no neighbour
    assert len(lonely["non_object_nearest_non_object"]) == 0 and lonely["object_nearest_non_object"].tolist() == [0.0]
