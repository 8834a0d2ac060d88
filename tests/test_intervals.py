"""The bootstrap interval of an accuracy covers it, narrows with more questions, and is the same for the same seed."""
import numpy as np
import pytest

from cacovid_lib.compare.intervals import accuracy_with_interval, bootstrap_interval, bootstrap_means
from cacovid_lib.io_utils import KitInputError


def outcomes(n, accuracy=0.7, seed=0):
    return np.random.default_rng(seed).random(n) < accuracy  # (n,) bool


def test_interval_covers_the_point_estimate():
    for n, acc in [(20, 0.5), (250, 0.9), (1000, 0.3)]:
        result = accuracy_with_interval(outcomes(n, acc))
        assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]
        assert result["ci_low"] < result["ci_high"]


def test_interval_shrinks_with_more_questions():
    widths = [np.subtract(*bootstrap_interval(outcomes(n))[::-1]) for n in (50, 200, 800)]
    assert widths[0] > widths[1] > widths[2]
    # a binomial proportion's standard error falls as 1/sqrt(n): 4x the questions, about half the width
    assert 0.35 < widths[2] / widths[1] < 0.65


def test_interval_matches_the_normal_approximation_on_many_questions():
    x = outcomes(2000, 0.6)
    low, high = bootstrap_interval(x, resamples=2000)
    se = np.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_same_seed_same_interval_other_seed_other_resamples():
    x = outcomes(300)
    assert bootstrap_interval(x, seed=3) == bootstrap_interval(x, seed=3)
    assert not np.array_equal(bootstrap_means(x, seed=3), bootstrap_means(x, seed=4))


def test_methods_on_the_same_questions_are_resampled_alike():
    """Paired resampling: the resampled indices depend only on (seed, n), so two methods' resampled accuracies move
    together, and a method that is right on every question another gets right never falls below it."""
    a = outcomes(200, 0.6)
    b = a | outcomes(200, 0.3, seed=1)  # b is right wherever a is
    assert (bootstrap_means(b) >= bootstrap_means(a)).all()


def test_constant_outcomes_have_a_zero_width_interval():
    assert bootstrap_interval(np.ones(50)) == (1.0, 1.0)
    assert bootstrap_interval(np.zeros(50)) == (0.0, 0.0)


def test_bad_input_is_one_line():
    with pytest.raises(KitInputError, match="non-empty vector"):
        bootstrap_interval([])
    with pytest.raises(KitInputError, match="level"):
        bootstrap_interval([1, 0], level=95)
