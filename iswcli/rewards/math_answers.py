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
# - numbers in scientific notation (2.5e3, 3.2e-2) outside LaTeX: read as 2.5
#   or 3; rewritten as plain decimals;
# - plain-text mixed numbers ("2 1/2"): read as 2 * 1/2 = 1; rewritten as the
#   improper fraction 5/2 (LaTeX's 2\frac{1}{2} the library already reads);
# - an escaped dollar sign before a number outside math mode ("\$1,250"):
#   nothing was read; the sign is dropped;
# - LaTeX after "the answer is" / "Answer:" without $...$ delimiters ("The
#   answer is 3\sqrt{2}."): read as its leading number; put between dollars;
# - a full stop right after a number ("The answer is 10/3."): read as a
#   decimal point (10/3. is the float 3.333..., which does not verify against
#   10/3); dropped when whitespace or the end of the text follows.

_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\uff0d": "-"})
_SCIENTIFIC = re.compile(r"(?<![\w.\\^{])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,3})(?!\w|\.\d)")
_MIXED_NUMBER = re.compile(r"(?<![\w.,/\\{}^])(\d+)[ \t]+(\d+)/(\d+)(?!\w|\.\d|[/^])")
_ESCAPED_DOLLAR = re.compile(r"\\\$(?=[ \t]?[\d.])")
_FULL_STOP = re.compile(r"(?<=\d)\.(?=\s|$)")
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:|=)[\s:]*", re.IGNORECASE)
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")


def normalize_math_text(text: str) -> str:
    """`text` with the forms math-verify misreads rewritten (see above)."""
    text = text.translate(_MINUS_SIGNS)
    text = _SCIENTIFIC.sub(_decimal, text)
    text = _MIXED_NUMBER.sub(_improper, text)
    text = _ESCAPED_DOLLAR.sub("", text)
    text = _FULL_STOP.sub("", text)
    return _delimit_bare_latex_answer(text)


def _decimal(match: re.Match) -> str:
    from decimal import Decimal

    plain = format(Decimal(f"{match.group(1)}e{match.group(2)}"), "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def _improper(match: re.Match) -> str:
    whole, num, den = (int(g) for g in match.groups())
    if den == 0 or num >= den:
        return match.group(0)
    return f"{whole * den + num}/{den}"


def _delimit_bare_latex_answer(text: str) -> str:
    """Put $...$ around LaTeX that follows the last answer phrase on its line
    when the line has no math delimiters of its own."""
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return text
    start = phrases[-1].end()
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    rest = text[start:end]
    if "\\" not in rest or any(d in text[phrases[-1].start() : end] for d in ("$", "\\(", "\\[")):
        return text
    answer = rest.strip().rstrip(".").strip()
    return f"{text[:start]}${answer}$.{text[end:]}" if answer else text


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
