"""What a stage's run() returns: typed values, not display strings.

Each stage defines a frozen dataclass on StageResult next to its config. The
CLI prints `display()` as the closing table and `as_json()` with --json. A
stage whose output is already up to date does not run and returns its result
with only `output` set and `reused=True` (see iswcli.cache.up_to_date).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

REUSED_STATUS = "up to date, not re-run"


@dataclass(frozen=True, kw_only=True)
class StageResult:
    output: str
    reused: bool = False  # the output already held this config's result: nothing ran, the other fields are None

    def display(self) -> dict[str, Any]:
        """The closing table: label -> value, in the order shown."""
        if self.reused:
            return {"output": self.output, "status": REUSED_STATUS}
        return self.rows()

    def rows(self) -> dict[str, Any]:
        """The table of a run that did its work; each stage's result says what it shows."""
        raise NotImplementedError(type(self).__name__)

    def as_json(self) -> dict[str, Any]:
        return plain(asdict(self))


def plain(value: Any) -> Any:
    """Dataclass values for JSON: numpy scalars and arrays become Python numbers and lists, tuples lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # a numpy scalar or array
        return plain(value.tolist())
    return value
