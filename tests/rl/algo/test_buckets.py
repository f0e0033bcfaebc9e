"""Response-width buckets (``rl.algo.buckets``): the widths by hand, the chosen width as a property
(the smallest bucket holding the longest response), and that scoring, shaping + GAE and the update
give the full-width results on the kept columns while compiling once per bucket, never again.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl.algo.buckets import bucket_width, trim, width_buckets


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ((1024,), (256, 512, 768, 1024)),
        # 28, 56, 84, 112 rounded up to multiples of 8.
        ((112,), (32, 56, 88, 112)),
        ((64, 1), (64,)),
        # Narrower than the multiple: rounding to 5 merges every bucket.
        ((5,), (5,)),
        ((100, 3, 1), (34, 67, 100)),
    ],
)
def test_width_buckets_by_hand(args, want):
    assert width_buckets(*args) == want


def test_bad_bucket_arguments_are_named():
    with pytest.raises(ValueError, match="max_width=0"):
        width_buckets(0)
    with pytest.raises(ValueError, match="must end at the response arrays' width 8"):
        bucket_width(np.ones((2, 8), bool), (4, 6))


@settings(max_examples=60, deadline=None)
@given(
    max_width=st.integers(1, 300),
    count=st.integers(1, 6),
    multiple=st.integers(1, 16),
    data=st.data(),
)
def test_the_width_is_the_smallest_bucket_holding_the_longest_response(
    max_width, count, multiple, data
):
    widths = width_buckets(max_width, count, multiple)
    assert 1 <= len(widths) <= count and widths[-1] == max_width
    assert list(widths) == sorted(set(widths))
    lengths = data.draw(st.lists(st.integers(0, max_width), min_size=1, max_size=5))
    response = np.arange(max_width)[None] < np.asarray(lengths)[:, None]
    w = bucket_width(response, widths)
    assert w in widths and w >= max(lengths)
    assert all(x < max(lengths) for x in widths if x < w)
    (cut,) = trim(w, response)
    assert cut.shape == (len(lengths), w) and cut.sum() == response.sum()
