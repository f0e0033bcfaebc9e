"""Test cases shared by tests/rewards' verifier tests: the equivalence table, hostile inputs,
code-injection payloads, a comparison slow enough to time out, and the timing slack a loaded
2-core machine needs."""

import pathlib

DATA = pathlib.Path(__file__).resolve().parents[2] / "rl" / "data" / "files"
POOL_TIMEOUT_S = 2.0
# Scheduling slack on a loaded 2-core machine, on top of a timeout.
SLACK_S = 3.0
# Passes every pre-screen, but SymPy needs ~15 s (in Python code, so SIGALRM can stop it) to
# compare it with the reference below.
SLOW_SYMBOLIC = ("\\boxed{(x+y+z+1)^{30}}", "(x+y+z+1)^{29}(x+y+z)")


EQUAL = [
    # thousands separators
    ("\\boxed{1,000}", "1000"),
    ("#### 1,234,567", "1234567"),
    ("\\boxed{10,\\!080}", "10080"),
    ("\\boxed{1{,}500}", "1500"),
    # units, currency and trailing text
    ("\\boxed{5 \\text{ cm}}", "5"),
    ("\\boxed{5 dollars}", "5"),
    ("\\boxed{\\$32,\\!348}", "32348"),
    ("\\boxed{5 apples}", "5"),
    ("\\boxed{864 \\mbox{ inches}^2}", "864"),
    ("The answer is $18.90.", "\\$18.90"),
    ("\\boxed{\\frac{270}7\\text{ degrees}}", "\\frac{270}{7}"),
    # percent: the sign is dropped, the number compared as written
    ("\\boxed{50\\%}", "50"),
    ("\\boxed{12.5}", "12.5\\%"),
    # fractions and decimals
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"),
    ("\\boxed{\\tfrac34}", "\\frac{3}{4}"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{1/2}", "0.5"),
    ("\\boxed{0.333333}", "\\frac{1}{3}"),
    ("\\boxed{.35625}", "\\frac{57}{160}"),
    ("\\boxed{18.00}", "18"),
    # intervals and tuples
    ("\\boxed{(3,4]}", "(3, 4]"),
    ("\\boxed{(-\\infty, 0]}", "(-\\infty,0]"),
    ("\\boxed{[-2, 7]}", "x \\in [-2,7]"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3, \\frac{\\pi}{2})"),
    ("\\boxed{(6,31,-1)}", "(6, 31, -1)"),
    ("\\boxed{(0.5, 2)}", "\\left(\\frac{1}{2}, 2\\right)"),
    # degrees
    ("\\boxed{30^\\circ}", "30"),
    ("\\boxed{90}", "90^\\circ"),
    ("\\boxed{45^{\\circ}}", "45 degrees"),
    # radicals, pi, signs
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
    ("\\boxed{\\pi/2}", "\\frac{\\pi}{2}"),
    ("\\boxed{2\\pi r}", "2 r \\pi"),
    ("\\boxed{-\\frac{1}{2}}", "-0.5"),
    ("\\boxed{\\frac{-3}{4}}", "-\\frac{3}{4}"),
    # equations
    ("\\boxed{x = 5}", "5"),
    ("\\boxed{5}", "x=5"),
    ("\\boxed{y = 2x + 3}", "y=3+2x"),
    # sets and lists (order-free)
    ("\\boxed{\\{1, 2\\}}", "\\{2, 1\\}"),
    ("\\boxed{3, 5, 7}", "7, 5, 3"),
    # text and multiple choice
    ("\\boxed{\\text{Evelyn}}", "Evelyn"),
    ("\\boxed{even}", "\\text{Even}"),
    ("\\boxed{(A)}", "A"),
    ("\\boxed{\\text{(C)}}", "C"),
    # algebra, complex numbers, matrices
    ("\\boxed{x^2+2x+1}", "(x+1)^2"),
    ("\\boxed{-5i+3}", "3-5i"),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    # other answer markers
    ("The answer is 42.", "42"),
    ("so \\fbox{7} wins", "7"),
]

DIFFERENT = [
    ("\\boxed{0.51}", "\\frac{1}{2}"),
    ("\\boxed{0.333}", "\\frac{1}{3}"),
    ("\\boxed{3.5}", "3"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{3}"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{2}{1}"),
    ("\\boxed{-3}", "3"),
    ("\\boxed{50\\%}", "0.5"),
    # tuples are ordered; open and closed intervals differ
    ("\\boxed{(2,1)}", "(1,2)"),
    ("\\boxed{[1,2)}", "[1,2]"),
    ("\\boxed{(1,2)}", "[1,2]"),
    ("\\boxed{(3,4)}", "(3,4]"),
    # a comma is a thousands separator only in groups of three
    ("\\boxed{1,2}", "12"),
    ("\\boxed{12}", "1,2"),
    ("\\boxed{1,001}", "1000"),
    ("\\boxed{1,0000}", "10000"),
    ("\\boxed{1,2,3}", "1,2"),
    ("\\boxed{\\sqrt{2}}", "2"),
    ("\\boxed{\\pi}", "3.14"),
    ("\\boxed{2\\pi}", "\\pi"),
    ("\\boxed{y = 5}", "x=5"),
    ("\\boxed{x = 5}", "x = -5"),
    ("\\boxed{\\{1,2\\}}", "\\{1,3\\}"),
    ("\\boxed{\\text{Navin}}", "Evelyn"),
    ("\\boxed{no}", "on"),
    ("\\boxed{(B)}", "A"),
    # a letter after a number is algebra, not a unit
    ("\\boxed{5t}", "5"),
    ("\\boxed{5x}", "5"),
    ("\\boxed{2\\mathbf{i}+3\\mathbf{j}}", "2\\mathbf{i}"),
    ("\\boxed{x^2+1}", "(x+1)^2"),
    ("\\boxed{3+5i}", "3-5i"),
    ("\\boxed{-\\infty}", "\\infty"),
    ("\\boxed{\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\boxed{30^\\circ}", "60"),
    ("\\boxed{5 \\text{ cm}}", "6"),
    # no answer, an empty box, a truncated last box
    ("no answer here", "42"),
    ("\\boxed{}", "0"),
    ("\\boxed{1} then \\boxed{2", "1"),
    ("The answer is 41.", "42"),
    ("\\boxed{1}", "\\boxed{2}"),
    ("#### 18", "#### 19"),
]


HOSTILE = {
    "power tower": ("\\boxed{9^{9^{9^{9}}}}", "1"),
    "power tower vs itself plus one": ("\\boxed{9^{9^{9^{9}}}}", "9^{9^{9^{9}}}+1"),
    "nested huge power": ("\\boxed{(10^{999})^{999}}", "0"),
    "huge factorial": ("\\boxed{100000!}", "1"),
    "huge binomial": ("\\boxed{\\binom{10000000}{5000000}}", "1"),
    "long sum of factorials": ("\\boxed{\\sum_{k=1}^{9999} k!}", "1"),
    "1 MB answer": ("\\boxed{" + "1" * 1_000_000 + "}", "1"),
    "1 MB of text": ("x" * 1_000_000, "1"),
    "1 MB of spaces then an answer": (" " * 1_000_000 + "answer is 1", "2"),
    "10,000 nested braces": ("\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1"),
    "10,000 unclosed braces": ("\\boxed{" + "{" * 10_000, "1"),
    "300 nested parentheses": ("\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}", "2"),
    "malformed frac": ("\\boxed{\\frac{1}{}", "1"),
    "malformed frac 2": ("\\boxed{\\frac{1}{2}{}", "\\frac{1}{"),
    "stray braces": ("}}}{{ \\boxed{}}}{{}", "}}}{{"),
    "unclosed box": ("\\boxed{", "\\boxed{"),
    "empty": ("", ""),
    "non-ASCII": ("答案是 \\boxed{四十二} ∞ ∑ 𝔽 \u200b\x00", "四十二x"),
    "control characters": ("\\boxed{\x00\x01\x7f}", "\x00"),
}


def code_payloads(marker: pathlib.Path) -> list[str]:
    python = f"__import__('os').system('touch {marker}')"
    return [
        python,
        f"\\boxed{{{python}}}",
        f"The answer is {python}.",
        f"#### {python}",
        f"\\boxed{{\\text{{{python}}}}}",
        f"\\boxed{{{python} + 1}}",
        f"\\boxed{{eval(\"open('{marker}', 'w')\")}}",
        f"\\boxed{{\\{python}}}",
    ]
