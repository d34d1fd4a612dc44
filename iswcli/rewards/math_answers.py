"""The `math` reward: the final answer a response states (a box, an answer phrase, or math alone), extracted by math-verify and compared with the task's answer parsed the same way; `math:flexible` also reads the last number of a finished response, `math:graded` adds partial credit."""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from fractions import Fraction

from iswcli.errors import IswtError
from iswcli.rewards.base import (
    BaseReward,
    RewardItem,
    RewardOptions,
    RewardResult,
    quote,
    register_reward,
    require_fields,
)

#
# math-verify finds the answer (its LaTeX and expression extraction: the
# rightmost \boxed{} or "final answer is ..." phrase, else the last math or
# number) and compares it with the gold answer, which goes through the same
# parser. A few rules of our own run first, each rewriting the text (response
# and gold alike) into a form the library reads correctly, only where it
# reads it wrongly (math-verify 0.9):
#
# - the Unicode minus sign (U+2212, and the full-width U+FF0D): the library
#   does not see it, so "−5" was read as 5;
# - numbers grouped in other locales' styles (1.000.000, 1'000'000,
#   10,00,000, 1 000 000 with thin or no-break spaces, 1.234,5): read as
#   their first group (1.000 = 1); rewritten as plain numbers. A lone "1.000"
#   stays the English 1.0;
# - numbers in scientific notation (2.5e3, 3.2e-2) outside LaTeX: read as 2.5
#   or 3; rewritten as plain decimals;
# - plain-text mixed numbers ("2 1/2"): read as 2 * 1/2 = 1; rewritten as the
#   improper fraction 5/2 (LaTeX's 2\frac{1}{2} the library already reads);
# - an escaped dollar sign before a number outside math mode ("\$1,250"):
#   nothing was read; the sign is dropped;
# - a dollar sign used as currency in prose ("$12.50 and the tip is $3"):
#   read as a LaTeX span between two dollar signs; a "$" before a number is
#   dropped when no closing "$" follows on its line, when the next "$" starts
#   another amount, or when the span between them is prose;
# - a ratio or a time in plain text ("4:3", "3:45"): read as its first
#   number; put between dollars (math-verify reads $4:3$ as the ratio), on
#   lines without math delimiters;
# - several \boxed{} answers: read as the set of them when "and", "or" or a
#   comma separates them; the last box is the final answer (the convention of
#   the common math graders: a set answer is written inside one box), so the
#   earlier boxes are unboxed;
# - "the answer to <the question restated> is": the library reads the first
#   number after "answer", so "The answer to 3 + 5 is 7" gave 8; the
#   restatement is dropped;
# - the bare answer after "the answer is" / "Answer:" without $...$
#   delimiters, read as its first number: LaTeX ("3\sqrt{2}", "2^{10}",
#   "x^2 + 1": 3, 2 and 1) and lists, tuples and intervals of numbers ("3,4"
#   as 3.4, "3, 4" and "3 and 4" as 3, "(1, 2]" as 2) are put between dollars
#   (lists as "3, 4"; "3 or 4" too, a hedge: no single number of it passes),
#   up to the first word of prose; "the answer is not 7" is no answer phrase;
# - a full stop right after a number ("The answer is 10/3."): read as a
#   decimal point (10/3. is the float 3.333..., which does not verify against
#   10/3); dropped when whitespace or the end of the text follows.
# - \fbox{x}: not seen as a box; read as \boxed{x}. \degree: not read;
#   written ^\circ. A GSM8K "#### 18" line: read as "Answer: 18".
# - digit groups with LaTeX spaces (1\,000, 1~000), or plain spaces inside
#   the last box (\boxed{1 000}): read as 1 * 0; rewritten as plain numbers.
# - "2.5 million", 2.5\text{ million}: read as 2.5; rewritten as 2500000.
# - a base subscript (204_5, 2345_{6}): dropped, so 204_6 passed against
#   204_5; written \text{204}_{5}, a symbol compared whole.
# - a number with its unit inside \text{} or \mbox{} (\mbox{5 cm}): read as
#   the symbol "5cm"; the number is taken out of the text.
# - an unclosed \boxed{: dropped (no answer is inside it; math-verify's box
#   pattern took time quadratic in how many there were).
#
# What earns reward at all: only a final answer stated explicitly (a box, an
# answer phrase, or a response of math alone); math-verify's fallback to the
# last math or number anywhere is math:flexible's, and never for a response
# cut at --max-new-tokens. A policy finds the last-number reading first: a
# truncated or looping response, or one that tries the gold answer and
# rejects it, would earn reward for a number it never gave as its answer.

_FBOX = re.compile(r"\\fbox\s*\{")
_DEGREE = re.compile(r"\\(?:text)?degree(?![A-Za-z])")
# A base subscript on digits (204_5, 2345_{6}, base 2 to 36), made a symbol
# math-verify compares whole: it drops the subscript and reads 204.
_BASE = re.compile(r"(?<![\w.^_])(\d+)_(?:\{(\d{1,2})\}|(\d{1,2})(?!\d))")
# "2.5 million", 2.5\text{ million}: the number it names.
_SCALE_WORDS = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALED = re.compile(
    r"(?<![\w.,])(\d+(?:\.\d+)?)(?:\s|\\[,;!]|~)*(?:\\(?:text|mbox|mathrm)\{\s*)?(thousand|million|billion|trillion)\b\s*\}?"
)
# Digit groups spaced by LaTeX's thin or fixed spaces (1\,000, 1~000, 1\ 000).
_LATEX_GROUPED = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\\[,;: ]|~)\d{3})+(?![\d])")
_SPACED_GROUPS = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![\d.,]| \d)")
_NUMBER_IN_TEXT = re.compile(r"\\(?:text|mbox)\{[ \t]*(-?\d[\d.,]*)[ \t]+([A-Za-z][A-Za-z ]*)\}")
_GSM8K_ANSWER = re.compile(r"^####[ \t]*(?=-?[$\d.][\d.,$ \t]*$)", re.MULTILINE)
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\uff0d": "-"})
_GROUPED = re.compile(
    r"(?<![\w.,'\u2019])(?:"
    r"\d{1,3}(?:\.\d{3}){2,}(?:,\d+)?"  # 1.000.000 (de)
    r"|\d{1,3}(?:\.\d{3})+,\d+"  # 1.234,5 (de)
    r"|\d{1,3}(?:['\u2019]\d{3})+(?:\.\d+)?"  # 1'000'000 (ch)
    r"|\d{1,2}(?:,\d{2})+,\d{3}(?:\.\d+)?"  # 10,00,000 (in)
    r"|\d{1,3}(?:[\u00a0\u2009\u202f]\d{3})+(?:,\d+)?"  # 1 000 000 with a thin or no-break space (fr, SI)
    r"|\d{1,3}(?: \d{3})+,\d+"  # 1 234,5 (fr)
    r")(?![\w.,'\u2019]?\d)"
)
_SCIENTIFIC = re.compile(r"(?<![\w.\\^{])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?!\w|\.\d)")
_MIXED_NUMBER = re.compile(r"(?<![\w.,/\\{}^])(\d+)[ \t]+(\d+)/(\d+)(?!\w|\.\d|[/^])")
_ESCAPED_DOLLAR = re.compile(r"\\\$(?=[ \t]?[\d.])")
_DOLLAR = re.compile(r"(?<![\\$])\$(?!\$)")
_AMOUNT_AFTER = re.compile(r"[ \t]?-?\.?\d")
_RATIO = re.compile(r"(?<![\w.:,/\\])\d+(?:\.\d+)?(?::\d+(?:\.\d+)?)+(?![\w:]|[.,]\d)")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_RESTATED = re.compile(r"\banswer\s+(?:to|for|of)\b(?:[^\n.!?$]|\.(?=\d)){1,80}?\s(?:is|equals)\b", re.IGNORECASE)
_FULL_STOP = re.compile(r"(?<=\d)\.(?=\s|$)")
# "The answer is not 7" states no answer; math-verify anchors on the word "answer" and reads 7.
_NEGATED_ANSWER = re.compile(r"\banswer(?=\s+(?:is|was)\s+not\b|\s+isn't\b)", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:|=)[\s:*]*", re.IGNORECASE)
# A word of prose: two or more letters on their own, not a LaTeX command's
# name and not a variable's product such as 2xy.
_PROSE_WORD = re.compile(r"(?<![\\\w])[A-Za-z]{2,}")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
# LaTeX in a bare answer; a unit's power ("8 m^3") is not: math-verify reads
# it as the number, and in math mode as a product with m.
_LATEX_MARKUP = re.compile(r"[\\{}^_]")
_UNIT_POWER = re.compile(r"(?<=\d)\s*(?:mm|cm|dm|m|km|in|ft|yd|mi)\^[23]\b")
# A list item: a number, with thousands separators only in groups of three
# (so "3,400" is one item and "3,4" two).
_ITEM = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+(?!,\d{3}(?!\d)))(?:\.\d+)?(?:/\d+)?"
_LIST_SEP = r"\s*(?:,|;|,?\s+(?:and|or)\b)\s*"
_NUMBER_LIST = re.compile(rf"({_ITEM})((?:{_LIST_SEP}{_ITEM})+)(?![\d.,]|\s*[-+*/^=])")
_BRACKETED = re.compile(rf"[(\[]\s*{_ITEM}(?:\s*,\s*{_ITEM})+\s*[)\]](?!\s*[-+*/^=])")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")


def normalize_math_text(text: str) -> str:
    """`text` with the forms math-verify misreads rewritten (see above)."""
    text = text.translate(_MINUS_SIGNS)
    text = _FBOX.sub(r"\\boxed{", text)
    text = _DEGREE.sub(r"^\\circ", text)
    text = _GSM8K_ANSWER.sub("Answer: ", text)
    text = _NUMBER_IN_TEXT.sub(r"\1\\text{ \2}", text)
    text = _LATEX_GROUPED.sub(lambda m: re.sub(r"\D", "", m.group(0)), text)
    text = _SCALED.sub(_scaled, text)
    text = _BASE.sub(_based, text)
    text = _GROUPED.sub(_ungrouped, text)
    text = _SCIENTIFIC.sub(_decimal, text)
    text = _MIXED_NUMBER.sub(_improper, text)
    text = _ESCAPED_DOLLAR.sub("", text)
    text = "\n".join(_delimit_ratios(_drop_currency_dollars(line)) for line in text.split("\n"))
    text = _ungroup_last_box(_unbox_all_but_last(text))
    text = _NEGATED_ANSWER.sub("guess", _RESTATED.sub("answer is", text))
    text = _FULL_STOP.sub("", text)
    return _delimit_bare_answer(text)


def _ungrouped(match: re.Match) -> str:
    """A locale-grouped number as plain digits: its first separator groups
    the digits; a comma left after that is the decimal mark (1.234,5)."""
    number = match.group(0)
    grouping = re.search(r"\D", number).group(0)
    return re.sub(r"\s", "", number.replace(grouping, "")).replace(",", ".")


def _scaled(match: re.Match) -> str:
    from decimal import Decimal

    value = Decimal(match.group(1)).scaleb(_SCALE_WORDS[match.group(2)])
    return format(value.normalize(), "f")


def _based(match: re.Match) -> str:
    digits, base = match.group(1), int(match.group(2) or match.group(3))
    if not 2 <= base <= 36:
        return match.group(0)
    return f"\\text{{{digits}}}_{{{base}}}"


def _ungroup_last_box(text: str) -> str:
    """The last box's "1 000 000" as 1000000: inside a box a space between
    groups of three digits is a thousands separator, not a list."""
    boxes = list(_BOX.finditer(text))
    if not boxes:
        return text
    close = _brace_pairs(text).get(boxes[-1].end() - 1)
    if close is None:
        return text
    inner = _SPACED_GROUPS.sub(lambda m: m.group(0).replace(" ", ""), text[boxes[-1].end() : close])
    return text[: boxes[-1].end()] + inner + text[close:]


def _decimal(match: re.Match) -> str:
    from decimal import Decimal

    if len(match.group(2).lstrip("+-")) > 3:  # 1e999999: kept whole as a symbol, so it is not read as 1
        return f"\\text{{{match.group(0)}}}"
    plain = format(Decimal(f"{match.group(1)}e{match.group(2)}"), "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def _improper(match: re.Match) -> str:
    whole, num, den = (int(g) for g in match.groups())
    if den == 0 or num >= den:
        return match.group(0)
    return f"{whole * den + num}/{den}"


def _drop_currency_dollars(line: str) -> str:
    """`line` without the "$" signs that mark amounts of money rather than math."""
    signs = [m.start() for m in _DOLLAR.finditer(line)]
    currency, i = set(), 0
    while i < len(signs):
        start, end = signs[i], signs[i + 1] if i + 1 < len(signs) else None
        if _AMOUNT_AFTER.match(line, start + 1) and (
            end is None or _AMOUNT_AFTER.match(line, end + 1) or _PROSE_WORD.search(_masked(line[start + 1 : end]))
        ):
            currency.add(start)
            i += 1
        else:
            i += 2  # a math span: skip its closing sign
    return "".join(c for k, c in enumerate(line) if k not in currency)


def _delimit_ratios(line: str) -> str:
    """`line` with its plain-text ratios between dollars, unless it has math delimiters."""
    if any(d in line for d in ("$", "\\(", "\\[")):
        return line
    return _RATIO.sub(lambda m: f"${m.group(0)}$", line)


def _brace_pairs(text: str) -> dict[int, int]:
    """Each balanced "{" index mapped to its "}" index, in one pass (a stack),
    so that unclosed or deeply nested braces cost time linear in the text."""
    pairs, opened = {}, []
    for k, c in enumerate(text):
        if c == "{":
            opened.append(k)
        elif c == "}" and opened:
            pairs[opened.pop()] = k
    return pairs


def brace_depth(text: str) -> int:
    """How deep the balanced braces of `text` nest (linear in its length)."""
    pairs = _brace_pairs(text)
    closes, depth, deepest = set(pairs.values()), 0, 0
    for k, c in enumerate(text):
        if c == "{" and k in pairs:
            depth += 1
            deepest = max(deepest, depth)
        elif c == "}" and k in closes:
            depth -= 1
    return deepest


def _unbox_all_but_last(text: str) -> str:
    """`text` with every \\boxed{x} (or \\fbox{x}) but the last written x,
    and every unclosed \\boxed{ dropped: no answer is inside it, and left in
    place it costs math-verify's box pattern time quadratic in their number."""
    pairs = _brace_pairs(text)
    boxes, unclosed, after = [], [], 0
    for m in _BOX.finditer(text):
        close = pairs.get(m.end() - 1)
        if close is None:
            unclosed.append((m.start(), m.end(), None))
        elif m.start() >= after:
            boxes.append((m.start(), m.end(), close))
            after = close
    pieces, at = [], 0  # the edits are disjoint: an unclosed "{" is never inside a closed pair
    for start, inner, close in sorted(boxes[:-1] + unclosed, key=lambda edit: edit[0]):
        pieces.append(text[at:start])
        if close is None:
            at = inner
        else:
            pieces.append(text[inner:close])
            at = close + 1
    return "".join(pieces) + text[at:]


def _masked(text: str) -> str:
    """`text` with LaTeX command names and brace groups blanked (same length),
    so that only the words of prose in it stay letters."""
    text = re.sub(r"\\[A-Za-z]+", lambda m: "\\" + "#" * (len(m.group(0)) - 1), text)
    pairs, pieces, at = _brace_pairs(text), [], 0
    for open_at in sorted(pairs):
        if open_at >= at:  # an outermost group: blank it whole
            pieces += [text[at:open_at], "#" * (pairs[open_at] - open_at + 1)]
            at = pairs[open_at] + 1
    return "".join(pieces) + text[at:]


def _delimit_bare_answer(text: str) -> str:
    """Put $...$ around the answer after the last answer phrase, when its
    line has no math delimiters and it is LaTeX or a list of numbers."""
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return text
    start = phrases[-1].end()
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    if any(d in text[phrases[-1].start() : end] for d in ("$", "\\(", "\\[")):
        return text
    rest = text[start:end]
    listed = _NUMBER_LIST.match(rest) or _BRACKETED.match(rest)
    if listed:
        return f"{text[:start]}${_as_set(listed.group(0))}${rest[listed.end() :]}{text[end:]}"
    masked = _masked(rest)
    prose = (m for m in _PROSE_WORD.finditer(masked) if m.group(0) not in ("and", "or"))  # they join list items
    cut = min((m.start() for m in (next(prose, None), _SENTENCE_END.search(masked)) if m), default=len(rest))
    answer = re.sub(r"(?:[\s,;*]|\band\b)+$", "", rest[:cut])
    if not _LATEX_MARKUP.search(_UNIT_POWER.sub("", answer)):
        return text
    joined = re.sub(r"\s*,?\s+(?:and|or)\s+", ", ", answer)
    return f"{text[:start]}${joined}${rest[len(answer) :]}{text[end:]}"


def _as_set(listed: str) -> str:
    """A plain-text list of numbers as LaTeX: items joined by ", ", thousands
    separators dropped; a tuple or interval as written."""
    if listed[0] in "([":
        return listed
    return ", ".join(item.replace(",", "") for item in re.findall(_ITEM, listed))


class OutOfTime(BaseException):
    """The deadline of one response's scoring passed. A BaseException, as
    math-verify's own timeout is, so that no `except Exception` on the way
    (math-verify's, sympy's) swallows it."""


@contextmanager
def deadline(seconds: float):
    """Raise OutOfTime in the main thread once `seconds` have passed (no limit when infinite).

    One timer covers our rewrites, math-verify's extraction and its
    comparison alike, so that nothing a response holds runs past --timeout.
    After the first alarm it repeats every 50 ms, so that a handler that does
    catch BaseException somewhere does not leave the rest without a limit.
    """
    if not math.isfinite(seconds):
        yield
        return

    def on_alarm(signum, frame):
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    outer, outer_interval = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:  # a caller's own alarm (a test runner's, say) goes on with what it had left
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3), outer_interval)


def _quiet_math_verify() -> None:
    """Our deadline replaces math-verify's own timeouts (its SIGALRM would
    cancel ours); its warnings about that, and its log lines quoting a whole
    response, would only clutter stderr."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _config(anchored: bool) -> tuple:
    """math-verify's extraction: boxed answers rank with the "final answer"
    phrases, so the last one stated wins; `anchored` keeps only those (a box
    or an answer phrase), without the last math or number anywhere."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    free = not anchored
    return (
        LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=free),
        ExprExtractionConfig(try_extract_without_anchor=free),
    )


def _parse_math(text: str, anchored: bool = False) -> list:
    """math-verify's parse of `text` after our rewrites, under the caller's deadline."""
    from math_verify import parse

    return parse(normalize_math_text(text), extraction_config=_config(anchored), parsing_timeout=None)


def _parse_gold(answer: str) -> list:
    """The gold answer through the same parser, read as a whole (boxed) first."""
    return _parse_math(f"\\boxed{{{answer}}}") or _parse_math(answer)


# math-verify's LaTeX parser (ANTLR) takes time exponential in the depth of
# nested braces, {{{1}}}: 1.5 s at depth 10, 9 s at 14. No answer is written
# 10 deep, so a response nested deeper gets nothing extracted, at once.
MAX_BRACE_DEPTH = 10


# Two numbers side by side, or a list, after the last "=": an enumeration
# ("1 2 3 4 5"), whose last number math-verify would read as the answer.
_SEVERAL_NUMBERS = re.compile(r"\d(?:\s+|\s*,\s*(?!\d{3}(?!\d)))[-+]?\.?\d")


_LONE_MAX = 200  # characters: an answer written alone is short; a page of digits is not one


def _lone_answer(text: str) -> bool:
    """Whether the whole response is one line holding one expression and no
    prose (such as "42" or "$x = 5$"): the answer is then stated explicitly.
    An enumeration of numbers ("1 2 3 4 5", "1, 2, 3"), or a line longer than
    _LONE_MAX, is not one."""
    text = text.strip()
    if not text or len(text) > _LONE_MAX or "\n" in text or _PROSE_WORD.search(_masked(text)):
        return False
    return not _SEVERAL_NUMBERS.search(text.rsplit("=", 1)[-1])


def _parse_response(text: str, implicit: bool) -> list:
    """The response's final answer: a box or an answer phrase, or the whole
    response when it is nothing but math; the last math or number anywhere
    only when `implicit` (math:flexible on a response that was not cut off)."""
    if brace_depth(text) > MAX_BRACE_DEPTH:
        return []
    found = _parse_math(text, anchored=True)
    if not found and (implicit or _lone_answer(text)):
        found = _parse_math(text)
    return found


def _shown(parsed: list) -> str:
    """The text math-verify extracted (its fallback string), else the value."""
    return parsed[-1] if len(parsed) > 1 and isinstance(parsed[-1], str) else str(parsed[0])


def extract_answer(text: str, timeout_s: float = 5, implicit: bool = False) -> tuple[str, str] | None:
    """The final answer in `text` as the math reward reads it, and how ('math-verify'), or None.

    Call from the main thread (the deadline uses SIGALRM).
    """
    _quiet_math_verify()
    try:
        with deadline(timeout_s):
            parsed = _parse_response(text, implicit)
    except OutOfTime:
        return None
    return (_shown(parsed), "math-verify") if parsed else None


def as_number(text: str) -> Fraction | None:
    """`text` as an exact number ('1,000', '-0.5', '1/2', '\\frac{1}{2}'), else None."""
    s = text.translate(_MINUS_SIGNS).strip().strip("$").strip().rstrip(".")
    s = s.replace("{,}", ",").replace("\\!", "").replace(" ", "")
    frac = _FRAC.match(s)
    if frac:
        s = f"{frac.group(1)}{frac.group(2)}/{frac.group(3)}"
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(/-?\d+)?", s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _value(parsed: list) -> Fraction | None:
    """The exact value of a parsed answer that is a plain number, else None."""
    import sympy

    expr = parsed[0] if parsed else None
    if isinstance(expr, (sympy.Integer, sympy.Rational)):
        return Fraction(int(expr.p), int(expr.q))
    if isinstance(expr, sympy.Float):
        return Fraction(str(expr))
    return as_number(_shown(parsed)) if parsed else None


class MathReward(BaseReward):
    """1.0 when math-verify finds the response's final answer equal to the task's `answer`.

    `math:graded` gives a wrong numeric answer partial credit,
    0.5 * exp(-|x - answer| / max(1, |answer|)): a dense signal for small
    models that are rarely exactly right, still below every correct answer.
    """

    name = "math"
    required_fields = ("answer",)

    def __init__(self, options: RewardOptions, graded: bool = False, flexible: bool = False):
        self.timeout_s = options.timeout_s
        self.graded = graded
        self.flexible = flexible

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Score every item in the calling (main) thread."""
        require_fields("math", items, "answer")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("math reward: call score_batch from the main thread (its deadline uses SIGALRM)")
        _quiet_math_verify()
        return [self.score_item(item) for item in items]

    def score_item(self, item: RewardItem) -> RewardResult:
        """One item, all of its parsing and comparison within --timeout."""
        answer = str(item.fields["answer"])
        implicit = self.flexible and item.finish_reason != "length"
        try:
            with deadline(self.timeout_s):
                return self.score_one(item.response, answer, implicit)
        except OutOfTime:
            return RewardResult(0.0, f"timed out after {self.timeout_s:g}s reading the answer; answer {quote(answer)}")

    def score_one(self, response: str, answer: str, implicit: bool = False) -> RewardResult:
        """Parse both sides, verify, explain (under the caller's deadline)."""
        from math_verify import verify

        depth = brace_depth(response)
        if depth > MAX_BRACE_DEPTH:
            return RewardResult(0.0, f"nothing extracted (braces nested {depth} deep, over {MAX_BRACE_DEPTH})")
        pred = _parse_response(response, implicit)
        if not pred:
            where = "no \\boxed{}, answer phrase or response of math alone" + (", math or number" if implicit else "")
            return RewardResult(0.0, f"nothing extracted ({where}); answer {quote(answer)}")
        gold = _parse_gold(answer)
        if not gold:
            return RewardResult(0.0, f"extracted {quote(_shown(pred))}; the answer {quote(answer)} could not be parsed")
        ok = verify(gold, pred, timeout_seconds=None)
        verdict = "matches" if ok else "does not match"
        why = f"extracted {quote(_shown(pred))}; {verdict} answer {quote(answer)} (math-verify)"
        if ok or not self.graded:
            return RewardResult(float(ok), why)
        credit = _credit(_value(pred), _value(gold))
        return RewardResult(credit, f"{why}; partial credit {credit:.3g}")


def _credit(x: Fraction | None, a: Fraction | None) -> float:
    if x is None or a is None:
        return 0.0
    try:
        return 0.5 * math.exp(-abs(float(x) - float(a)) / max(1.0, abs(float(a))))
    except OverflowError:
        return 0.0


def partial_credit(extracted: str, answer: str) -> float:
    """0.5 * exp(-relative distance) for a wrong number; 0 when either side is not a number."""
    return _credit(as_number(extracted), as_number(answer))


_VARIANTS = ("graded", "flexible")


@register_reward("math")
def _make_math(arg: str | None, options: RewardOptions) -> MathReward:
    chosen = set() if arg is None else set(arg.split(","))
    if not chosen <= set(_VARIANTS) or (arg is not None and "" in arg.split(",")):
        raise IswtError(
            f"--reward math:{arg}: the variants are math:graded (partial credit for near misses), "
            "math:flexible (also the last number of a finished response) and math:graded,flexible"
        )
    return MathReward(options, graded="graded" in chosen, flexible="flexible" in chosen)
