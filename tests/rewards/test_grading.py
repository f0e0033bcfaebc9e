"""In-process grading: hostile inputs are refused within the deadline, model text is never run as
code, checks work from threads, the SIGALRM deadline fires and leaves signal state (and a caller's
own timer) as it found them."""

from __future__ import annotations

import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewards import grading
from rewards.verify import is_correct
from tests.rewards.verify_cases import (
    DIFFERENT,
    EQUAL,
    HOSTILE,
    SLACK_S,
    SLOW_SYMBOLIC,
    code_payloads,
)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_in_process(name):
    response, answer = HOSTILE[name]
    start = time.monotonic()
    assert is_correct(response, answer) is False
    assert time.monotonic() - start < grading.DEFAULT_TIMEOUT_S + SLACK_S


def test_model_text_is_never_executed(verifier, tmp_path):
    marker = tmp_path / "pwned"
    payloads = code_payloads(marker)
    for payload in payloads:
        assert is_correct(payload, "1") is False
        is_correct("\\boxed{1}", payload)
    result = verifier.check_batch(
        payloads + ["\\boxed{1}"] * len(payloads), ["0"] * len(payloads) + payloads
    )
    assert result.num_errors == 0
    assert not marker.exists()


def test_is_correct_from_threads():
    cases = EQUAL[::3] + DIFFERENT[::3]
    expected = [True] * len(EQUAL[::3]) + [False] * len(DIFFERENT[::3])
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda case: is_correct(*case), cases))
        hostile = list(pool.map(lambda case: is_correct(*case), HOSTILE.values()))
    assert got == expected
    assert hostile == [False] * len(HOSTILE)


def test_signal_state_is_restored():
    before = signal.getsignal(signal.SIGALRM)
    assert is_correct("\\boxed{x^2+2x+1}", "(x+1)^2")
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_callers_interval_timer_is_left_alone():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 60.0)
        assert is_correct("\\boxed{\\sqrt{12}}", "2\\sqrt{3}")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0.0 < remaining <= 60.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


def test_slow_check_times_out_in_process():
    """The main thread's SIGALRM deadline ends a Python-level SymPy comparison."""
    start = time.monotonic()
    assert grading.grade(*SLOW_SYMBOLIC, timeout_s=1.0) == grading.TIMEOUT
    assert time.monotonic() - start < 1.0 + SLACK_S
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.fixture
def recorded_unraisables(monkeypatch):
    """Replaces ``sys.unraisablehook`` with one that records (slowly, like pytest's, which formats
    a traceback) what reaches it."""
    seen = []

    def slow_hook(unraisable):
        time.sleep(0.3)  # longer than the deadlines below: an alarm would land here
        seen.append(type(unraisable.exc_value))

    monkeypatch.setattr(sys, "unraisablehook", slow_hook)
    return seen


def test_deadline_landing_in_a_finalizer_is_raised_again(monkeypatch):
    """An alarm that lands in a finalizer is dropped by the interpreter; the re-armed one ends the
    block, and the dropped one is not reported as an error."""

    class SlowToDelete:
        def __del__(self):
            time.sleep(0.3)  # the first alarm fires here and is lost

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    start = time.monotonic()
    with pytest.raises(grading._DeadlineExceeded), grading._deadline(0.1):
        SlowToDelete()
        time.sleep(5)
    assert time.monotonic() - start < 1.0
    assert seen == []
    assert sys.unraisablehook == seen.append


def test_other_unraisables_reach_the_callers_hook_whole(recorded_unraisables):
    """A finalizer's own error goes to the previous hook, and the deadline cannot interrupt that
    hook (it did interrupt pytest's, which failed a test with "Failed to process unraisable
    exception"); the deadline still ends the block after it."""
    hook = sys.unraisablehook

    class BrokenFinalizer:
        def __del__(self):
            raise ValueError("finalizer")

    with pytest.raises(grading._DeadlineExceeded), grading._deadline(0.1):
        BrokenFinalizer()
        time.sleep(5)
    assert recorded_unraisables == [ValueError]
    assert sys.unraisablehook is hook


@pytest.mark.parametrize(
    "response, answer, want",
    [
        ("no answer stated", "1", None),
        ("so \\boxed{2}", "2", ("2", "2")),
        ("so \\boxed{2}", "#### 2", ("2", "2")),
        ("The answer is 3.", "\\boxed{3}", ("3", "3")),
        ("#### 4", "\\boxed{", ("4", "\\boxed{")),  # an unreadable reference is kept as written
    ],
)
def test_final_answers(response, answer, want):
    assert grading.final_answers(response, answer) == want
