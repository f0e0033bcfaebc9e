"""Answer extraction and normalization (``rewards._normalize``), rule by rule of its policy,
plus the pre-screen that keeps SymPy away from astronomically large numbers.

The verifier built on these (``rewards.verify``: math-verify, worker pools, timeouts) is tested in
test_verify.py; here every function is called directly with hand-worked expectations.
"""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards import _normalize as nz

# --- extraction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{a} then \\fbox{ b }", "b"),  # the last box; stripped
        ("$\\boxed 7$ ok", "7"),  # an unbraced argument runs to the next space or dollar
        ("\\boxed{\\{1\\}}", "\\{1\\}"),  # escaped braces are content
        ("\\boxedx{1}", None),  # not the \boxed command
        ("\\boxed{", None),
        ("\\boxed{  }", None),
        ("She pays $18.\n#### 1,234\nsomething after", "1,234"),
        ("#### 18.", "18"),
        ("The answer is: $5$.", "5"),
        ("the answer is 3. Then the answer is 4.\nMore", "4"),  # the last "answer is" sentence
        ("Answer is", None),
        ("nothing to see", None),
    ],
)
def test_extract(text, expected):
    assert nz.extract(text) == expected


def test_a_box_beats_a_gsm8k_mark_beats_answer_is():
    assert nz.extract("#### 1\nthe answer is 2\n\\boxed{3}") == "3"
    assert nz.extract("the answer is 2.\n#### 1") == "1"


@pytest.mark.parametrize(
    "text, open_index, expected",
    [
        ("{a{b}c}", 0, 6),
        ("{a{b}c}", 2, 4),
        ("{a\\}b}", 0, 5),  # \} does not close
        ("{\\\\}", 0, 3),  # an escaped backslash, then a real closing brace
        ("{{}", 0, None),
    ],
)
def test_matching_brace_by_hand(text, open_index, expected):
    assert nz.matching_brace(text, open_index) == expected


# Text built as a tree of brace groups around escaped-brace and letter atoms, so the index of each
# group's closing brace is known by construction.
_ATOMS = st.sampled_from(["a", "\\{", "\\}", "\\\\"])
_GROUPS = st.recursive(_ATOMS, lambda inner: st.lists(inner, max_size=4), max_leaves=20)


def _render(tree, out: list[str], pairs: list[tuple[int, int]]) -> None:
    if isinstance(tree, str):
        out.append(tree)
        return
    start = sum(map(len, out))
    out.append("{")
    for child in tree:
        _render(child, out, pairs)
    pairs.append((start, sum(map(len, out))))
    out.append("}")


@given(st.lists(_GROUPS, max_size=4), st.booleans())
def test_matching_brace_finds_every_groups_close(trees, truncate):
    out, pairs = [], []
    for tree in trees:
        _render(tree if isinstance(tree, list) else [tree], out, pairs)
    text = "".join(out)
    for open_index, close_index in pairs:
        assert nz.matching_brace(text, open_index) == close_index
    if truncate and pairs:  # without its closing brace, the outermost group is never closed
        open_index, close_index = max(pairs, key=lambda p: p[1] - p[0])
        assert nz.matching_brace(text[:close_index], open_index) is None


def test_matching_brace_is_iterative():
    deep = "{" * 100_000 + "}" * 100_000
    assert nz.matching_brace(deep, 0) == len(deep) - 1  # no RecursionError


# --- normalization, rule by rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [
        # Values-free markup goes.
        ("$\\frac{1}{2}$", "\\frac{1}{2}"),
        ("\\( x \\)", "x"),
        ("\\[ 7 \\]", "7"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "( 3, \\frac{\\pi}{2} )"),
        ("\\Bigl( 1 \\Bigr)", "( 1 )"),
        ("\\displaystyle x", "x"),
        ("\\dfrac34", "\\frac{3}{4}"),
        ("\\tfrac{3}{4}", "\\frac{3}{4}"),
        ("\\frac{1}2", "\\frac{1}{2}"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("  a   b  ", "a b"),
        ("18.", "18"),
        ("\u22125", "-5"),
        # Percent and degrees are dropped; the number is kept as written.
        ("50\\%", "50"),
        ("12.5%", "12.5"),
        ("30^\\circ", "30"),
        ("45^{\\circ}", "45"),
        ("90°", "90"),
        # Thousands separators only when the whole answer is one number grouped in threes.
        ("1,234,567", "1234567"),
        ("10,\\!080", "10080"),
        ("1{,}500", "1500"),
        ("-1,234.5", "-1234.5"),
        ("\\$32,\\!348", "32348"),
        ("(1,2)", "(1,2)"),
        ("1,2", "1,2"),
        ("12,34", "12,34"),
        ("1,2345", "1,2345"),
        # Units: a trailing text block with a word of 2+ letters, or 2+-letter words after a
        # number; one letter is algebra.
        ("5\\text{ cm}", "5"),
        ("864 \\mbox{ inches}^2", "864"),
        ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
        ("5 dollars", "5"),
        ("5 square feet", "5"),
        ("\\frac{1}{2} cups", "\\frac{1}{2}"),
        ("2\\mathrm{i}", "2\\mathrm{i}"),
        ("3~\\text{m}", "3 \\text{m}"),
        ("5x", "5x"),
        ("5 x", "5 x"),
        # Whole-answer text blocks unwrap; plain text is lower-cased; single letters keep case.
        ("\\text{Evelyn}", "evelyn"),
        ("\\textbf{Yes}", "yes"),
        ("New York", "new york"),
        ("\\text{(C)}", "C"),
        ("(A)", "A"),
        ("e", "e"),
        ("E", "E"),
        # Equations are left alone here (drop_assignment decides, knowing the other answer).
        ("x = 5", "x = 5"),
    ],
)
def test_normalize_policy(answer, expected):
    assert nz.normalize(answer) == expected


def test_overlong_answers_are_only_stripped():
    long = "  " + "\\frac{1}{2}" * 100 + "  "
    assert len(long.strip()) > nz.MAX_ANSWER_CHARS
    assert nz.normalize(long) == long.strip()


@given(st.integers(-(10**18), 10**18))
def test_grouped_integers_lose_their_separators(n):
    assert nz.normalize(f"{n:,}") == str(n)
    assert nz.normalize(f"{n:,}".replace(",", ",\\!")) == str(n)
    assert nz.normalize(f"{n:,}".replace(",", "{,}")) == str(n)


@given(st.text(max_size=60))
def test_normalize_returns_a_string_for_any_text(text):
    out = nz.normalize(text)
    assert isinstance(out, str) and out == out.strip()


# --- comparison helpers -------------------------------------------------------------------------


@given(st.text(alphabet="ab1 \t\n", max_size=20))
def test_key_drops_all_whitespace_and_nothing_else(text):
    assert nz.key(text) == "".join(c for c in text if not c.isspace())


@pytest.mark.parametrize(
    "text, plain",
    [
        ("evelyn", True),
        ("new york", True),
        ("o'neil", True),
        ("even-odd", True),
        ("a", False),  # one letter is a variable
        ("x y", False),
        ("ab1", False),
        ("\\pi", False),
    ],
)
def test_is_plain_text(text, plain):
    assert nz.is_plain_text(text) is plain


@pytest.mark.parametrize(
    "text, value",
    [
        ("x = 5", "5"),
        ("x_1 = 5", "5"),
        ("x_{ab}=3", "3"),
        ("x = y = 5", "x = y = 5"),  # not a single assignment
        ("xy = 5", "xy = 5"),  # not a single variable
        ("5", "5"),
    ],
)
def test_drop_assignment(text, value):
    assert nz.drop_assignment(text) == value


@pytest.mark.parametrize(
    "text, expected",
    [
        ("-3", (Fraction(-3), False)),
        ("+.5", (Fraction(1, 2), True)),
        ("18.00", (Fraction(18), True)),
        ("1/2", (Fraction(1, 2), False)),
        ("-\\frac{3}{4}", (Fraction(-3, 4), False)),
        ("- 3", (Fraction(-3), False)),  # whitespace is not part of the number
        ("1/0", None),
        ("\\frac{3}{0}", None),
        ("1.", None),
        ("x", None),
        ("\\frac{a}{2}", None),
    ],
)
def test_as_number(text, expected):
    assert nz.as_number(text) == expected


@given(st.integers(-(10**9), 10**9), st.integers(1, 10**6))
def test_fractions_and_integers_are_exact(num, den):
    assert nz.as_number(f"{num}/{den}") == (Fraction(num, den), False)
    assert nz.as_number(str(num)) == (Fraction(num), False)


def test_numbers_equal_rounds_to_six_places_only_with_a_decimal():
    third, two_quarters, half = Fraction(1, 3), Fraction(2, 4), Fraction(1, 2)
    assert nz.numbers_equal((Fraction("0.333333"), True), (third, False))
    assert not nz.numbers_equal((Fraction("0.333"), True), (third, False))
    assert not nz.numbers_equal((Fraction("0.51"), True), (half, False))
    assert nz.numbers_equal((two_quarters, False), (half, False))
    # Two exact fractions are never rounded: 333333/1000000 is not 1/3.
    assert not nz.numbers_equal((Fraction(333333, 1000000), False), (third, False))


@given(
    st.fractions(max_denominator=1000),
    st.booleans(),
    st.fractions(max_denominator=1000),
    st.booleans(),
)
def test_numbers_equal_is_reflexive_and_symmetric(a, dec_a, b, dec_b):
    assert nz.numbers_equal((a, dec_a), (a, dec_a))
    assert nz.numbers_equal((a, dec_a), (b, dec_b)) == nz.numbers_equal((b, dec_b), (a, dec_a))


# --- the SymPy pre-screen -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, reason",
    [
        # digits(base) x exponent must stay <= 100,000.
        ("2^{100000}", None),
        ("2^{100001}", "power with more than MAX_RESULT_DIGITS digits"),
        ("10^{50000}", None),
        ("10^{50001}", "power with more than MAX_RESULT_DIGITS digits"),
        ("2**100001", "power with more than MAX_RESULT_DIGITS digits"),
        (
            "3^{2\\cdot 50001}",
            "power with more than MAX_RESULT_DIGITS digits",
        ),  # exponents multiply
        (
            "(10^{99})^{9999}",
            "power with more than MAX_RESULT_DIGITS digits",
        ),  # groups carry digits
        ("9^{9^{9}}", "power tower"),
        ("x^{", "unclosed exponent"),
        ("9999!", None),
        ("10000!", "factorial of a large argument"),
        ("\\binom{9999}{3}", None),
        ("\\binom{10000}{3}", "binomial of a large literal"),
        ("\\sum_{k=1}^{3} k", "sum, product, integral or limit"),
        ("\\int_0^1 x dx", "sum, product, integral or limit"),
        ("\\lim_{x} x", "sum, product, integral or limit"),
        ("1" * 1001, "longer than MAX_ANSWER_CHARS"),
        # Ordinary answers pass.
        ("x^8+x^7+1", None),
        ("2^{2005}", None),
        ("\\frac{\\sqrt{3}}{2}", None),
        ("(2^{3})!", None),
        ("¹²", None),  # superscript digits are not decimal digits
    ],
)
def test_symbolic_hazard(answer, reason):
    assert nz.symbolic_hazard(answer) == reason


def test_nesting_bound():
    assert nz.symbolic_hazard("(" * 49 + "1" + ")" * 49) is None
    assert nz.symbolic_hazard("(" * 51 + "1" + ")" * 51) == "nested deeper than MAX_NESTING_DEPTH"
    assert nz.symbolic_hazard("{" * 200 + "1") == "nested deeper than MAX_NESTING_DEPTH"


@given(st.integers(1, 9), st.integers(1, 200_000))
def test_single_digit_powers_are_refused_exactly_past_the_digit_bound(base, exponent):
    flagged = nz.symbolic_hazard(f"{base}^{{{exponent}}}") is not None
    assert flagged == (exponent > nz.MAX_RESULT_DIGITS)
