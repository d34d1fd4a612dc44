"""The `python:MODULE:FUNCTION` reward: a user function called on each row and response."""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import os
import sys

from iswcli.errors import IswtError, first_line
from iswcli.rewards.base import (
    BaseReward,
    RewardItem,
    RewardOptions,
    RewardResult,
    quote,
    register_reward,
)


def import_user_module(name: str, label: str):
    """A module by dotted name (cwd first on sys.path) or by .py file path."""
    try:
        if name.endswith(".py"):
            if not os.path.isfile(name):
                raise IswtError(f"--reward {label}: no such file {name}")
            spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        return importlib.import_module(name)
    except IswtError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise IswtError(f"--reward {label}: cannot import {name!r} ({type(exc).__name__}: {first_line(exc)})") from None


def user_row(item: RewardItem) -> dict:
    """What the user function gets as its first argument."""
    prompt = [dict(m) for m in item.messages] if item.messages else item.prompt
    row = dict(item.fields)
    if len(item.key) == 2:
        row.update(prompt_id=item.key[0], sample_idx=item.key[1])
    row["prompt"] = prompt
    return row


class PythonReward(BaseReward):
    """A user function (row, response) -> float | (float, info)."""

    name = "python"
    required_fields = ()

    def __init__(self, arg: str | None):
        self.label = f"python:{arg or ''}"
        module_name, _, function_name = (arg or "").rpartition(":")
        if not module_name or not function_name:
            raise IswtError(f"--reward {self.label}: expected python:MODULE:FUNCTION")
        module = import_user_module(module_name, self.label)
        self.function = getattr(module, function_name, None)
        if not callable(self.function):
            raise IswtError(f"--reward {self.label}: module {module_name!r} has no function {function_name!r}")
        self.file = getattr(module, "__file__", None)

    def provenance(self) -> dict:
        record = {"function": self.label, "file": self.file}
        if self.file and os.path.isfile(self.file):
            from iswcli.artifacts import file_sha256

            record["sha256"] = file_sha256(self.file)
        return record

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        return [self.score_one(item) for item in items]

    def score_one(self, item: RewardItem) -> RewardResult:
        """The function's verdict; an exception or a non-number becomes NaN with why."""
        try:
            out = self.function(user_row(item), item.response)
        except Exception as exc:  # noqa: BLE001 - reported per sample by the caller
            return RewardResult(math.nan, f"error: {self.label} raised {type(exc).__name__}: {first_line(exc)}")
        value, info = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        if not isinstance(value, numbers.Real):
            return RewardResult(
                math.nan, f"error: {self.label} returned {quote(repr(out))}, expected a float or (float, info)"
            )
        return RewardResult(float(value), self.label if info is None else str(info))


@register_reward("python")
def _make_python(arg: str | None, options: RewardOptions) -> PythonReward:
    return PythonReward(arg)


# set / set:DEFAULT: exact answers on token ids (iswcli.rewards.answer_set, for --task sets)
