"""PRIME's prompt filter by hand: per-prompt accuracy, bounds included, the batch filled with
the in-band prompts first and then the nearest out-of-band ones; and its invariants (hypothesis).
(A band that can keep no prompt is a config error: tests/rl/test_config_prime.py.)"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rl.data import accuracy_band as ab


def test_prompt_accuracy_and_the_band_by_hand():
    # 3 prompts x 4 samples: 1/4, 4/4, 2/4 correct.
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0], np.float32)
    acc = ab.prompt_accuracy(correct, 4)
    np.testing.assert_array_equal(acc, [0.25, 1.0, 0.5])
    # Bounds are included: 0.25 is in [0.25, 0.75]; 0.2 as a bound equals 1/5 exactly.
    np.testing.assert_array_equal(ab.in_band(acc, (0.25, 0.75)), [True, False, True])
    np.testing.assert_array_equal(
        ab.in_band(ab.prompt_accuracy([1, 0, 0, 0, 0], 5), (0.2, 0.8)), [True]
    )
    np.testing.assert_array_equal(ab.in_band(acc, (0.3, 0.75)), [False, False, True])


def test_select_takes_the_first_in_band_prompts_then_the_nearest_out_of_band():
    acc = np.array([0.0, 0.5, 1.0, 0.75, 0.25, 0.5])
    band = (0.2, 0.8)
    # Enough in band (prompts 1, 3, 4, 5): the first three sampled, in sampled order.
    np.testing.assert_array_equal(ab.select(acc, band, 3), [1, 3, 4])
    # Too few in band for 3 (only prompt 1 of the first three): the rest filled nearest-first.
    acc = np.array([0.0, 0.5, 1.0, 0.9, 0.05])
    # distances to [0.2, 0.8]: 0.2, 0, 0.2, 0.1, 0.15 -> 1, then 3 (0.1), then 4 (0.15)
    np.testing.assert_array_equal(ab.select(acc, band, 3), [1, 3, 4])
    # Ties go to the earlier sampled: prompts 0 and 2 are both 0.2 away.
    np.testing.assert_array_equal(ab.select(acc, band, 5), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ab.select(np.array([0.0, 1.0, 0.0]), band, 2), [0, 1])


@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=24),
    st.integers(0, 4),
    st.integers(0, 4),
    st.data(),
)
def test_select_invariants(counts, a, b, data):
    """For any sampled accuracies (k/4) and band: ``needed`` distinct prompts in sampled order,
    as many in band as there are (up to ``needed``), and every in-band prompt among the first
    ``needed`` in-band ones is chosen."""
    low, high = sorted((a / 4, b / 4))
    acc = np.array(counts) / 4
    needed = data.draw(st.integers(1, len(acc)))
    chosen = ab.select(acc, (low, high), needed)
    assert len(chosen) == needed and list(chosen) == sorted(set(chosen.tolist()))
    inside = np.flatnonzero(ab.in_band(acc, (low, high)))
    assert ab.in_band(acc[chosen], (low, high)).sum() == min(needed, len(inside))
    assert set(inside[:needed].tolist()) <= set(chosen.tolist())
