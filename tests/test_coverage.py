"""compare/coverage.py: which objects the kept tokens show, on hand-made labels (and data.schema.asked_token_mask)."""
import math

import numpy as np

from cacovid_lib.compare.coverage import object_coverage


def test_coverage_of_hand_made_keeps():
    labels = np.array([[0, 0, 1, -1, 2, -1],    # asks about object 1
                       [0, 1, 1, -1, -1, -1],   # counts objects 0 and 1
                       [0, -1, -1, -1, -1, -1],  # a count of zero: asks about none
                       [0, 1, -1, -1, -1, -1]])  # asks about object 3, which is never on screen
    asked = [[1], [0, 1], [], [3]]
    keeps = np.array([[0, 0, 1, 1, 0, 0],     # object 1 kept, one kept token on nothing
                      [1, 0, 0, 1, 0, 0],     # object 0 kept, object 1 missed
                      [1, 0, 0, 0, 0, 0],
                      [0, 0, 1, 1, 0, 0]], bool)
    out = object_coverage(labels, asked, keeps)
    assert out["asked_objects_kept"] == 0.5  # only the first two questions have asked objects on screen
    assert out["objects_covered"] == (1 + 1 + 1 + 0) / 4
    assert math.isclose(out["kept_on_no_object"], 4 / 7)


def test_coverage_when_nothing_is_asked_or_kept():
    labels = np.zeros((2, 3), int)
    out = object_coverage(labels, [[], []], np.zeros((2, 3), bool))
    assert math.isnan(out["asked_objects_kept"]) and out["objects_covered"] == 0 and math.isnan(out["kept_on_no_object"])


def test_asked_token_mask_marks_the_tokens_of_the_asked_object():
    from cacovid_lib.data.schema import asked_token_mask

    labels = np.array([[0, 1, -1], [2, 1, 0]])  # (t, h*w) object index per token, -1 none
    assert asked_token_mask(labels, {"target_object": 1}).tolist() == [[False, True, False], [False, True, False]]
    assert asked_token_mask(labels, {"target_object": 2}).tolist() == [[False, False, False], [True, False, False]]
