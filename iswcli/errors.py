"""The one exception type the CLI turns into a single line and exit code 2."""


class IswtError(Exception):
    """Bad input or a broken precondition the user can fix.

    The message is shown as-is on one line: name the file, column or flag and
    the rule that failed.
    """


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only; its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def rule_of(exc: IswtError) -> str:
    """An IswtError's rule without its leading 'FLAG VALUE: ', to restate it under another flag."""
    return str(exc).split(": ", 1)[-1]


def raise_first_failure(checks: list[tuple[bool, str]]) -> None:
    """Raise IswtError with the message of the first (ok, message) check that failed."""
    for ok, message in checks:
        if not ok:
            raise IswtError(message)
