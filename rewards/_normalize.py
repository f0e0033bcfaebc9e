"""Answer strings: extraction and the cheap, deterministic normalization in front of math-verify.

Everything here is plain string work (regular expressions that cannot backtrack catastrophically,
iterative scans, no recursion), so it runs in time about linear in the input and cannot be made to
execute code or to hang. ``rewards.verify`` decides most comparisons here (equal keys, two plain
numbers, two plain-text answers) and hands only the rest to math-verify's LaTeX-to-SymPy path, after
``symbolic_hazard`` has ruled out inputs that make SymPy compute astronomically large numbers.

Normalization policy (each rule says why it is safe for a reward):

* Dollar signs, ``\\left``/``\\right``, spacing commands (``\\!``, ``\\,``, ``\\;``, ``~``...) and
  ``\\displaystyle`` carry no value. ``\\dfrac``/``\\tfrac``/``\\cfrac`` are ``\\frac``.
* Percent signs and degree marks are dropped: ``50\\%`` equals ``50`` and ``30^\\circ`` equals
  ``30``. ``50\\%`` does NOT equal ``0.5``: the number is compared as written, so an answer on the
  wrong scale for a "what percent" question is wrong, and a policy cannot hedge between scales.
* Thousands separators go only when the whole answer is one number grouped in threes
  (``1,234,567``, ``10,\\!080``); ``(1,2)``, ``1,2`` and ``12,34`` keep their commas.
* Units: a trailing ``\\text{...}``/``\\mbox{...}``/``\\mathrm{...}`` block holding a word of two or
  more letters is dropped after a value (``5\\text{ cm}``, ``864 \\mbox{ inches}^2``; not
  ``2\\mathrm{i}``), as are trailing words of two or more letters after a plain number
  (``5 dollars``, ``5 apples``); ``5x`` and ``5 x`` stay algebra. math-verify's own unit rule, which
  also deletes one-letter "units" (``5t`` would equal ``5``), is switched off in ``rewards.verify``.
* ``x = 5`` is ``5`` when the other answer is not an equation; ``x = 5`` and ``y = 5`` differ.
* A whole-answer text block is unwrapped (``\\text{Evelyn}`` is ``Evelyn``); answers made only of
  words of two or more letters compare as case-insensitive text and never go to SymPy, which would
  read ``no`` and ``on`` as the same product ``n*o``.
* Unicode minus is ``-``. Multiple choice: ``(A)`` is ``A``. Single letters keep their case
  (``e`` is Euler's number).
"""

from __future__ import annotations

import re
from fractions import Fraction

# Extracted answers longer than this are compared only by whitespace-free string equality: real
# final answers are far shorter, and it bounds every later stage (regexes, SymPy) on hostile text.
MAX_ANSWER_CHARS = 1000
# Past this brace/parenthesis depth an answer is not handed to the (recursive) LaTeX parser.
MAX_NESTING_DEPTH = 50
# SymPy evaluates powers and factorials of numbers eagerly with Python integers, inside C code that
# no signal can interrupt. These bounds keep every number it could build below ~10^100000.
MAX_RESULT_DIGITS = 100_000
MAX_FACTORIAL_DIGITS = 4
MAX_BINOMIAL_LITERAL_DIGITS = 4

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_GSM8K_MARK = "####"
_ANSWER_IS = re.compile(r"answer\s+is\s*:?", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")

_TEXT_COMMAND = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|textup|mbox|mathrm)\s*(?=\{)"
)
_UNIT_WORD = re.compile(r"[A-Za-z]{2,}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?:\.|(?![A-Za-z]))|\\[bB]igg?[lr]?(?![A-Za-z])")
_SPACING = re.compile(r"(?<!\\)\\[!,:;>]|\\(?:q?quad|displaystyle|textstyle)(?![A-Za-z])")
_WIDE_SPACE = re.compile(r"(?<!\\)\\ |~")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_DEGREES = re.compile(
    r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ(?![A-Za-z])|°|\\degree(?![A-Za-z])"
)
_PERCENT = re.compile(r"\\?%")
_FRAC_DIGITS = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_DIGIT_DENOMINATOR = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")
_FRAC_DIGIT_NUMERATOR = re.compile(r"\\frac\s*(\d)\s*\{")
_SQRT_DIGIT = re.compile(r"\\sqrt\s*(\d)")
_UNIT_POWER = re.compile(r"\s*\^\s*(?:\{\s*\d\s*\}|\d)")
_PLAIN_NUMBER = r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_NUMBER_THEN_WORDS = re.compile(
    rf"(?P<number>{_PLAIN_NUMBER}|-?\\frac\{{\d+\}}\{{\d+\}})"
    r"\s+[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)*(?:\s*\^\s*\{?\d\}?)?"
)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_CHOICE = re.compile(r"\(([A-Za-z])\)")
_WORDS = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z](?:\s+[A-Za-z][A-Za-z'\-]*[A-Za-z])*")
_ASSIGNMENT = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?\s*=(?P<value>[^=]+)")
_INTEGER = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?\d*\.\d+")
_SLASH_FRACTION = re.compile(r"(?P<sign>[-+]?)(?P<num>\d+)/(?P<den>\d+)")
_LATEX_FRACTION = re.compile(r"(?P<sign>-?)\\frac\{(?P<num>\d+)\}\{(?P<den>\d+)\}")
_INTEGER_LITERAL = re.compile(r"\d+")
_COMMAND = re.compile(r"\\(?:[A-Za-z]+|.|$)", re.DOTALL)
_EXPONENT_TOKEN = re.compile(r"\\[A-Za-z]+|\d+|.", re.DOTALL)
_BOX_TOKEN = re.compile(r"[^\s$]+")
# Unevaluated big operators are not final answers, and SymPy's evaluation of them is unbounded.
_BIG_OPERATOR = re.compile(r"\\(?:sum|prod|int|iint|iiint|oint|lim)(?![A-Za-z])")
_OPENERS = "{(["
_CLOSERS = "})]"


def matching_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_index``, or None when it is never closed.

    An iterative scan, so 10,000 nested braces cost nothing; escaped braces (``\\{``) are content.
    """
    depth = 0
    i = open_index
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _box_content(text: str, command_end: int) -> str | None:
    """Argument of the ``\\boxed``/``\\fbox`` ending at ``command_end``: ``{...}`` or ``\\boxed
    x``."""
    i = command_end
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        close = matching_brace(text, i)
        return None if close is None else text[i + 1 : close]
    token = _BOX_TOKEN.match(text, i)
    return token.group(0) if token else None


def _after_answer_is(text: str) -> str | None:
    """The sentence after the last "answer is", without its final period or dollar signs."""
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    end = _SENTENCE_END.search(rest)
    sentence = rest[: end.start()] if end else rest
    return sentence.strip().strip("$").strip().rstrip(".").strip() or None


def extract(text: str) -> str | None:
    """See ``rewards.verify.extract_answer``."""
    boxes = list(_BOX_COMMAND.finditer(text))
    if boxes:
        content = _box_content(text, boxes[-1].end())
        return content.strip() if content and content.strip() else None
    mark = text.rfind(_GSM8K_MARK)
    if mark >= 0:
        line = text[mark + len(_GSM8K_MARK) :].strip().split("\n", 1)[0]
        return line.strip().rstrip(".").strip() or None
    return _after_answer_is(text)


def _unwrap_text_blocks(text: str) -> str:
    """Unwraps a whole-answer text block and drops trailing unit blocks after a value."""
    for _ in range(4):
        blocks = list(_TEXT_COMMAND.finditer(text))
        if not blocks:
            return text
        block = blocks[-1]
        close = matching_brace(text, block.end())
        if close is None:
            return text
        inner = text[block.end() + 1 : close]
        before, after = text[: block.start()].strip(), text[close + 1 :]
        if not before and not after.strip():
            text = inner.strip()
        elif (
            before
            and _UNIT_WORD.search(inner)
            and _UNIT_POWER.sub("", after, count=1).strip() == ""
        ):
            text = before
        else:
            return text
    return text


def normalize(answer: str) -> str:
    """The answer as canonical LaTeX (single spaces) following the module's policy."""
    text = answer.strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text
    text = text.replace("\u2212", "-")
    text = text.replace("\\$", "").replace("$", "")
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(opener) and text.endswith(closer):
            text = text[len(opener) : -len(closer)]
    text = _LEFT_RIGHT.sub("", text)
    text = _SPACING.sub("", text)
    text = _WIDE_SPACE.sub(" ", text)
    text = _FRAC_VARIANT.sub(r"\\frac", text)
    text = text.replace("{,}", ",")
    text = _DEGREES.sub("", text)
    text = _PERCENT.sub("", text)
    text = " ".join(text.split())
    text = _unwrap_text_blocks(text).strip().rstrip(".").strip()
    words_after_number = _NUMBER_THEN_WORDS.fullmatch(text)
    if words_after_number:
        text = words_after_number.group("number")
    text = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_DIGIT_DENOMINATOR.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_DIGIT_NUMERATOR.sub(r"\\frac{\1}{", text)
    text = _SQRT_DIGIT.sub(r"\\sqrt{\1}", text)
    compact = text.replace(" ", "")
    if _THOUSANDS.fullmatch(compact):
        text = compact.replace(",", "")
    choice = _CHOICE.fullmatch(text)
    if choice:
        text = choice.group(1)
    if is_plain_text(text):
        text = text.lower()
    return text


def key(normalized: str) -> str:
    """Whitespace-free form used for string equality."""
    return "".join(normalized.split())


def is_plain_text(normalized: str) -> bool:
    """True for answers made only of words of two or more letters ("Evelyn", "New York")."""
    return _WORDS.fullmatch(normalized) is not None


def drop_assignment(normalized: str) -> str:
    """``x = 5`` -> ``5``: the value of a single-variable assignment; other strings unchanged."""
    match = _ASSIGNMENT.fullmatch(normalized)
    return match.group("value").strip() if match else normalized


def as_number(normalized: str) -> tuple[Fraction, bool] | None:
    """An integer, decimal or simple fraction as an exact Fraction, with whether it was a
    decimal."""
    compact = key(normalized)
    try:
        if _INTEGER.fullmatch(compact):
            return Fraction(int(compact)), False
        if _DECIMAL.fullmatch(compact):
            return Fraction(compact), True
        fraction = _SLASH_FRACTION.fullmatch(compact) or _LATEX_FRACTION.fullmatch(compact)
        if fraction and int(fraction.group("den")) != 0:
            value = Fraction(int(fraction.group("num")), int(fraction.group("den")))
            return (-value if fraction.group("sign") == "-" else value), False
    except ValueError:
        return None
    return None


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    """Exact equality; with a decimal involved, equality after rounding to 6 places.

    The rounding mirrors math-verify's ``float_rounding=6``, so ``0.333333`` equals ``1/3`` but
    ``0.333`` does not, and ``1/2`` differs from ``0.51``.
    """
    (value_a, decimal_a), (value_b, decimal_b) = a, b
    if value_a == value_b:
        return True
    return (decimal_a or decimal_b) and round(value_a, 6) == round(value_b, 6)


def _exponent(text: str, caret: int) -> tuple[str, int] | None:
    """The exponent after the ``^`` at ``caret`` and the index just past it (None if unclosed)."""
    i = caret + 1
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return "", i
    if text[i] == "{":
        close = matching_brace(text, i)
        return None if close is None else (text[i + 1 : close], close + 1)
    token = _EXPONENT_TOKEN.match(text, i)
    return token.group(0), token.end()


def _literal_digits(text: str) -> int:
    """Number of digits of the largest integer literal in ``text`` (1 when it has none)."""
    return max(
        (len(m.group(0).lstrip("0") or "0") for m in _INTEGER_LITERAL.finditer(text)), default=1
    )


def symbolic_hazard(normalized: str) -> str | None:
    """Why SymPy must not see this answer, or None when it may.

    Tracks, per bracket group, an upper bound on the digits of any number built inside it: a
    literal has its own digit count, ``b^e`` has ``digits(b) * e`` with ``e`` bounded by the product
    of the literals in the exponent. Nested groups multiply, so ``(10^{99})^{9999}`` is caught as
    well as the tower ``9^{9^{9^{9}}}``, while ``x^8 + x^7 + ...`` and ``2^{2005}`` pass.
    Sums, products, integrals and limits are refused outright (no MATH answer contains one).
    """
    if len(normalized) > MAX_ANSWER_CHARS:
        return "longer than MAX_ANSWER_CHARS"
    if _BIG_OPERATOR.search(normalized):
        return "sum, product, integral or limit"
    if ("\\binom" in normalized or "\\choose" in normalized) and (
        _literal_digits(normalized) > MAX_BINOMIAL_LITERAL_DIGITS
    ):
        return "binomial of a large literal"
    group_digits = [1]
    last_operand_digits = 1
    i = 0
    while i < len(normalized):
        char = normalized[i]
        if char == "\\":
            i = _COMMAND.match(normalized, i).end()
            last_operand_digits = 1
            continue
        if char in _OPENERS:
            group_digits.append(1)
            if len(group_digits) > MAX_NESTING_DEPTH:
                return "nested deeper than MAX_NESTING_DEPTH"
        elif char in _CLOSERS:
            if len(group_digits) > 1:
                last_operand_digits = group_digits.pop()
                group_digits[-1] = max(group_digits[-1], last_operand_digits)
        elif char.isdecimal():  # what \d matches; isdigit() also takes superscripts such as "¹"
            literal = _INTEGER_LITERAL.match(normalized, i).group(0)
            last_operand_digits = len(literal.lstrip("0") or "0")
            group_digits[-1] = max(group_digits[-1], last_operand_digits)
            i += len(literal)
            continue
        elif char == "!":
            if last_operand_digits > MAX_FACTORIAL_DIGITS:
                return "factorial of a large argument"
        elif char == "^" or normalized.startswith("**", i):
            exponent = _exponent(normalized, i + (normalized[i] == "*"))
            if exponent is None:
                return "unclosed exponent"
            content, end = exponent
            if "^" in content or "**" in content:
                return "power tower"
            bound = 1
            for literal in _INTEGER_LITERAL.finditer(content):
                bound = min(bound * max(1, int(literal.group(0)[:7])), MAX_RESULT_DIGITS + 1)
            digits = last_operand_digits * bound
            if digits > MAX_RESULT_DIGITS:
                return "power with more than MAX_RESULT_DIGITS digits"
            last_operand_digits = digits
            group_digits[-1] = max(group_digits[-1], digits)
            i = end
            continue
        elif not char.isspace():
            last_operand_digits = 1
        i += 1
    return None
