"""The `math` reward: math-verify's own extraction of the final answer, compared with the task's answer parsed the same way; `math:graded` adds partial credit."""

from __future__ import annotations

import math
import re
import threading
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
#   (lists as "3, 4"), up to the first word of prose;
# - a full stop right after a number ("The answer is 10/3."): read as a
#   decimal point (10/3. is the float 3.333..., which does not verify against
#   10/3); dropped when whitespace or the end of the text follows.

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
_SCIENTIFIC = re.compile(r"(?<![\w.\\^{])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,3})(?!\w|\.\d)")
_MIXED_NUMBER = re.compile(r"(?<![\w.,/\\{}^])(\d+)[ \t]+(\d+)/(\d+)(?!\w|\.\d|[/^])")
_ESCAPED_DOLLAR = re.compile(r"\\\$(?=[ \t]?[\d.])")
_DOLLAR = re.compile(r"(?<![\\$])\$(?!\$)")
_AMOUNT_AFTER = re.compile(r"[ \t]?-?\.?\d")
_RATIO = re.compile(r"(?<![\w.:,/\\])\d+(?:\.\d+)?(?::\d+(?:\.\d+)?)+(?![\w:]|[.,]\d)")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_RESTATED = re.compile(r"\banswer\s+(?:to|for|of)\b(?:[^\n.!?$]|\.(?=\d)){1,80}?\s(?:is|equals)\b", re.IGNORECASE)
_FULL_STOP = re.compile(r"(?<=\d)\.(?=\s|$)")
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
_LIST_SEP = r"\s*(?:,|;|,?\s+and\b)\s*"
_NUMBER_LIST = re.compile(rf"({_ITEM})((?:{_LIST_SEP}{_ITEM})+)(?![\d.,]|\s*[-+*/^=])")
_BRACKETED = re.compile(rf"[(\[]\s*{_ITEM}(?:\s*,\s*{_ITEM})+\s*[)\]](?!\s*[-+*/^=])")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")


def normalize_math_text(text: str) -> str:
    """`text` with the forms math-verify misreads rewritten (see above)."""
    text = text.translate(_MINUS_SIGNS)
    text = _GROUPED.sub(_ungrouped, text)
    text = _SCIENTIFIC.sub(_decimal, text)
    text = _MIXED_NUMBER.sub(_improper, text)
    text = _ESCAPED_DOLLAR.sub("", text)
    text = "\n".join(_delimit_ratios(_drop_currency_dollars(line)) for line in text.split("\n"))
    text = _unbox_all_but_last(text)
    text = _RESTATED.sub("answer is", text)
    text = _FULL_STOP.sub("", text)
    return _delimit_bare_answer(text)


def _ungrouped(match: re.Match) -> str:
    """A locale-grouped number as plain digits: its first separator groups
    the digits; a comma left after that is the decimal mark (1.234,5)."""
    number = match.group(0)
    grouping = re.search(r"\D", number).group(0)
    return re.sub(r"\s", "", number.replace(grouping, "")).replace(",", ".")


def _decimal(match: re.Match) -> str:
    from decimal import Decimal

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


def _brace_end(text: str, open_at: int) -> int:
    """The index of the "}" closing the "{" at `open_at`, else -1."""
    depth = 0
    for k in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return k
    return -1


def _unbox_all_but_last(text: str) -> str:
    """`text` with every \\boxed{x} (or \\fbox{x}) but the last written x."""
    boxes, after = [], 0
    for m in _BOX.finditer(text):
        close = _brace_end(text, m.end() - 1)
        if m.start() >= after and close >= 0:
            boxes.append((m.start(), m.end(), close))
            after = close
    for start, inner, close in reversed(boxes[:-1]):
        text = text[:start] + text[inner:close] + text[close + 1 :]
    return text


def _masked(text: str) -> str:
    """`text` with LaTeX command names and brace groups blanked (same length),
    so that only the words of prose in it stay letters."""
    text = re.sub(r"\\[A-Za-z]+", lambda m: "\\" + "#" * (len(m.group(0)) - 1), text)
    while True:
        blanked = re.sub(r"\{[^{}]*\}", lambda m: "#" * len(m.group(0)), text)
        if blanked == text:
            return text
        text = blanked


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
    prose = (m for m in _PROSE_WORD.finditer(masked) if m.group(0) != "and")  # "and" joins list items
    cut = min((m.start() for m in (next(prose, None), _SENTENCE_END.search(masked)) if m), default=len(rest))
    answer = re.sub(r"(?:[\s,;*]|\band\b)+$", "", rest[:cut])
    if not _LATEX_MARKUP.search(_UNIT_POWER.sub("", answer)):
        return text
    joined = re.sub(r"\s*,?\s+and\s+", ", ", answer)
    return f"{text[:start]}${joined}${rest[len(answer) :]}{text[end:]}"


def _as_set(listed: str) -> str:
    """A plain-text list of numbers as LaTeX: items joined by ", ", thousands
    separators dropped; a tuple or interval as written."""
    if listed[0] in "([":
        return listed
    return ", ".join(item.replace(",", "") for item in re.findall(_ITEM, listed))


def _parse_math(text: str, timeout_s: int) -> list:
    """math-verify's parse with LaTeX and expression extraction; boxed answers
    rank with the "final answer" phrases, so the last one stated wins."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return parse(normalize_math_text(text), extraction_config=config, parsing_timeout=timeout_s)


def _parse_gold(answer: str, timeout_s: int) -> list:
    """The gold answer through the same parser, read as a whole (boxed) first."""
    return _parse_math(f"\\boxed{{{answer}}}", timeout_s) or _parse_math(answer, timeout_s)


def _shown(parsed: list) -> str:
    """The text math-verify extracted (its fallback string), else the value."""
    return parsed[-1] if len(parsed) > 1 and isinstance(parsed[-1], str) else str(parsed[0])


def extract_answer(text: str, timeout_s: int = 5) -> tuple[str, str] | None:
    """The final answer in `text` as math-verify extracts it, and how ('math-verify'), or None.

    Call from the main thread (math-verify's timeouts use SIGALRM).
    """
    parsed = _parse_math(text, timeout_s)
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

    def __init__(self, options: RewardOptions, graded: bool = False):
        self.verify_timeout_s = max(1, round(options.timeout_s))
        self.graded = graded

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Score every item in the calling (main) thread."""
        require_fields("math", items, "answer")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "math reward: call score_batch from the main thread (math-verify times out with SIGALRM)"
            )
        return [self.score_one(item.response, str(item.fields["answer"])) for item in items]

    def score_one(self, response: str, answer: str) -> RewardResult:
        """Parse both sides, verify, explain."""
        from math_verify import verify

        t = self.verify_timeout_s
        pred = _parse_math(response, t)
        if not pred:
            return RewardResult(
                0.0, f"nothing extracted (no \\boxed{{}}, answer phrase, math or number); answer {quote(answer)}"
            )
        gold = _parse_gold(answer, t)
        if not gold:
            return RewardResult(0.0, f"extracted {quote(_shown(pred))}; the answer {quote(answer)} could not be parsed")
        ok = verify(gold, pred, timeout_seconds=t)
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


@register_reward("math")
def _make_math(arg: str | None, options: RewardOptions) -> MathReward:
    if arg not in (None, "graded"):
        raise IswtError(f"--reward math:{arg}: the only variant is math:graded (partial credit for near misses)")
    return MathReward(options, graded=arg == "graded")
