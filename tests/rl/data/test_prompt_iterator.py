"""PromptIterator: deterministic per (seed, epoch), exact resume from state(), full batches, host
slices."""

import json

import hypothesis
import pytest
from hypothesis import strategies as st

from rl.data import DataError, Example, PromptIterator

EXAMPLES_40 = [Example(id=f"x/{i}", question=f"q{i}", answer=str(i)) for i in range(40)]
EXAMPLES = EXAMPLES_40[:23]


def _ids(batches):
    return [[ex.id for ex in batch] for batch in batches]


def _take(it, n):
    return _ids(next(it) for _ in range(n))


def test_same_seed_same_batches_other_seed_other_batches():
    assert _take(PromptIterator(EXAMPLES, 5, seed=3), 12) == _take(
        PromptIterator(EXAMPLES, 5, seed=3), 12
    )
    assert _take(PromptIterator(EXAMPLES, 5, seed=3), 12) != _take(
        PromptIterator(EXAMPLES, 5, seed=4), 12
    )


def test_each_epoch_is_a_fresh_shuffle_of_full_batches_without_repeats():
    it = PromptIterator(EXAMPLES, 5, seed=0)
    assert it.batches_per_epoch == 4  # 23 // 5; 3 examples left out per epoch
    epochs = [_take(it, 4) for _ in range(3)]
    for epoch in epochs:
        ids = [i for batch in epoch for i in batch]
        assert all(len(batch) == 5 for batch in epoch)
        assert len(set(ids)) == 20
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize("k", [0, 1, 3, 4, 5, 9])
def test_resume_from_state_continues_exactly(k):
    it = PromptIterator(EXAMPLES, 5, seed=7)
    _take(it, k)
    state = json.loads(json.dumps(it.state()))  # As saved in a checkpoint.
    resumed = PromptIterator.from_state(EXAMPLES, state)
    assert _take(resumed, 10) == _take(it, 10)


def test_state_names_epoch_and_position():
    it = PromptIterator(EXAMPLES, 5, seed=7)
    _take(it, 6)
    assert {k: it.state()[k] for k in ("epoch", "position", "seed", "batch_size")} == {
        "epoch": 1,
        "position": 2,
        "seed": 7,
        "batch_size": 5,
    }


def test_resuming_on_different_examples_is_refused():
    state = PromptIterator(EXAMPLES, 5, seed=7).state()
    with pytest.raises(DataError, match="num_examples=23 does not match"):
        PromptIterator.from_state(EXAMPLES[:-1], state)
    with pytest.raises(DataError, match="examples_sha256=.* does not match"):
        PromptIterator.from_state(EXAMPLES[::-1], state)
    with pytest.raises(DataError, match=r"missing \['epoch'\]"):
        PromptIterator.from_state(EXAMPLES, {k: v for k, v in state.items() if k != "epoch"})
    with pytest.raises(DataError, match="position=9: must be in"):
        PromptIterator.from_state(EXAMPLES, {**state, "position": 9})


def test_hosts_get_disjoint_slices_of_the_same_global_batch():
    whole = _take(PromptIterator(EXAMPLES, 6, seed=1), 5)
    parts = [
        _take(PromptIterator(EXAMPLES, 6, seed=1, process_index=p, process_count=3), 5)
        for p in range(3)
    ]
    assert [sum((part[b] for part in parts), []) for b in range(5)] == whole


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0, seed=0), "batch_size=0"),
        (
            dict(batch_size=24, seed=0),
            r"batch_size=24: must be an integer in \[1, len\(examples\)=23\]",
        ),
        (dict(batch_size=5, seed=-1), "seed=-1"),
        (dict(batch_size=5, seed=0, process_count=2), "process_count=2: .* dividing batch_size=5"),
        (dict(batch_size=4, seed=0, process_count=2, process_index=2), "process_index=2"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(DataError, match=match):
        PromptIterator(EXAMPLES, **kwargs)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(n=st.integers(1, 40), data=st.data())
def test_resume_property(n, data):
    examples = EXAMPLES_40[:n]
    batch_size = data.draw(st.integers(1, n))
    seed, k = data.draw(st.integers(0, 2**31)), data.draw(st.integers(0, 30))
    it = PromptIterator(examples, batch_size, seed)
    _take(it, k)
    resumed = PromptIterator.from_state(examples, it.state())
    assert _take(resumed, 7) == _take(it, 7)
