"""How an `iswt` command fails: one line on stderr and an exit code, never a usage box or a traceback.

A bad flag value, a missing flag or an unknown command (click's usage errors)
exits 2 with one line naming the flag; an `IswtError` (bad input the stage
refused) exits 2 with its message; anything else is a bug, reported in one
line as an internal error with exit 1. `--debug` shows the traceback instead.
"""

from __future__ import annotations

from contextlib import contextmanager

import typer
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click, whose exceptions are these
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:
    from click.exceptions import NoArgsIsHelpError, UsageError

from iswcli import console
from iswcli.errors import IswtError


class OneLineUsageErrors(TyperGroup):
    """A bad flag value, a missing flag or an unknown command: one line and exit code 2, not a usage box."""

    def make_context(self, *args, **kwargs):
        with _usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _usage_errors():
            return super().invoke(ctx)


@contextmanager
def _usage_errors():
    try:
        yield
    except NoArgsIsHelpError:
        raise  # `iswt` alone prints the help
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "iswt"
        console.fail(f"{exc.format_message()} (see {command} --help)")
        raise typer.Exit(2) from None


@contextmanager
def domain_errors():
    """Turn failures into one line and a non-zero exit, unless --debug."""
    try:
        yield
    except IswtError as exc:
        if console.settings.debug:
            raise
        console.fail(str(exc))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.fail("interrupted; re-run the same command to resume where it stopped")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a bug, still reported in one line
        if console.settings.debug:
            raise
        console.fail(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)")
        raise typer.Exit(1) from None
