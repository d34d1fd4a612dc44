"""The values every numeric option of every `iswt` command accepts, declared once and checked as the flags are parsed.

Each int or float option names one of the domains below as its callback
(`typer.Option(..., callback=POSITIVE.check)`), so a bad number, from the
command line or a --config file, is refused in one line with exit code 2
before any work starts. A float must be finite as well as in range: NaN fails
every comparison and inf passes a one-sided one, so both are ruled out by name.
tests/test_domains.py walks every command and fails on a numeric option
without a domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import typer

from iswcli.cli_errors import UsageError
from iswcli.config_file import given_as


@dataclass(frozen=True)
class Domain:
    """Numbers from low to high; an open end excludes the bound itself, a missing one is unbounded (floats: finite)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not self.integer and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    @property
    def brief(self) -> str:
        """The domain in a few characters, for --help: 'x>0', '0<x<=1', '1<=x<2^31'."""
        if self.high is None:
            return f"x{'>' if self.low_open else '>='}{_number(self.low)}"
        low = f"{_number(self.low)}{'<' if self.low_open else '<='}"
        return f"{low}x{'<' if self.high_open else '<='}{_number(self.high)}"

    def rule(self, value: float) -> str:
        """What `value` breaks, in the words the stages use ('at least 1', 'a finite number > 0', 'in (0, 1]')."""
        if not self.integer:
            if self.high is None:
                return f"a finite number {'>' if self.low_open else '>='} {_number(self.low)}"
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None and value < self.low:
            return f"at least {_number(self.low)}"
        return f"below {_number(self.high)}" if self.high_open else f"at most {_number(self.high)}"

    def check(self, ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
        """The option's callback: the value unchanged, or one line naming the flag (or the config key) and the rule."""
        if value is None or self.admits(value):
            return value
        raise UsageError(f"{given_as(ctx, param, value)}: must be {self.rule(value)}", ctx)


def _number(x: float | None) -> str:
    """2**31 as 2^31; 1.0 as 1."""
    if isinstance(x, int) and x >= 2**16 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"
    return f"{x:g}" if isinstance(x, float) else str(x)


# Whole numbers. Below 2^31: a count past int32 overflows sample_idx and torch's index types.
COUNT = Domain(integer=True, low=1, high=2**31, high_open=True)
COUNT_OR_ZERO = Domain(integer=True, low=0, high=2**31, high_open=True)  # 0 turns the thing off
# numpy refuses a negative seed and torch one past 64 bits, mid-run
SEED = Domain(integer=True, low=0, high=2**63, high_open=True)

# Real numbers, all finite.
POSITIVE = Domain(low=0, low_open=True)
NON_NEGATIVE = Domain(low=0)
FRACTION = Domain(low=0, low_open=True, high=1)  # a share or probability: (0, 1]
DROPOUT = Domain(low=0, high=1, high_open=True)
# AdamW steps; above 1 the update outgrows the weights (and lr * weight_decay > 1 flips their sign).
LEARNING_RATE = Domain(low=0, low_open=True, high=1)
WEIGHT_DECAY = Domain(low=0, high=1)
# KL penalty: past 1000 it swamps the loss and overflows the gradient in float32 (1e30 did, issue 35).
KL_COEF = Domain(low=0, high=1000)
# Per program or check: SIGALRM and subprocess timeouts overflow on huge values; a day is far past any real one.
SECONDS = Domain(low=0, low_open=True, high=86400)


def domain_of(param) -> Domain | None:
    """The domain a click parameter checks, if any (typer wraps the callback; the bound method is its __wrapped__)."""
    check = getattr(param.callback, "__wrapped__", param.callback)
    owner = getattr(check, "__self__", None)
    return owner if isinstance(owner, Domain) else None
