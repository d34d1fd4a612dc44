"""`--help` that reads at 80 columns: options in panels by concern, each name whole, the description beside it.

typer's own layout gives the type, the range and the --no-x form of a flag a
column each, so at 80 columns option names were cut and descriptions left
about 18 characters wide. Here a panel is a two-column table: the names with
a conventional metavar (TEXT, INTEGER, FLOAT, PATH; a flag has none), never
wrapped, and the description with its default and, for a number, its domain
(iswcli/domains.py) in the rest. An option joins the panel its
`rich_help_panel` names, in the order the command declares them; the Run
panel comes last and takes the options without one (--help), which make an
Options panel of their own where a command has no Run panel.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from iswcli.cli_errors import OneLineUsageErrors
from iswcli.domains import domain_of
from iswcli.options import RUN as RUN_PANEL

_METAVARS = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: None}


class IswtCommand(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        print_help(self, ctx)


class IswtGroup(OneLineUsageErrors):
    def format_help(self, ctx, formatter) -> None:
        print_help(self, ctx)


class IswtApp(typer.Typer):
    """A typer app whose commands print this help: every `@app.command()` gets IswtCommand."""

    def command(self, *args, cls=IswtCommand, **kwargs):
        return super().command(*args, cls=cls, **kwargs)


@dataclass(frozen=True)
class Row:
    """One option or argument as --help lists it (docs/reference can render the same rows)."""

    names: list[str]  # --x, then --no-x for a pair; an argument's metavar
    metavar: str | None  # None for a flag
    help: str
    notes: list[str]  # required, the default, the domain


def help_panels(command, ctx) -> list[tuple[str, list[Row]]]:
    """The command's panels in the order --help prints them, each with its rows."""
    return [(title, [_row(param) for param in params]) for title, params in _panels(command.get_params(ctx))]


def usage(command, ctx) -> str:
    """'iswt report [OPTIONS] PATHS...'"""
    pieces = [ctx.command_path, "[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name == "argument":
            pieces.append(_argument_name(param) if param.required else f"[{_argument_name(param)}]")
    if getattr(command, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def print_help(command, ctx) -> None:
    console = Console(markup=False, emoji=False, highlight=False)  # width: $COLUMNS, else the terminal's
    console.print(Padding(Text.assemble(("Usage: ", "yellow"), (usage(command, ctx), "bold")), (1, 1)))
    if command.help:
        console.print(Padding(Text(inspect.cleandoc(command.help)), (0, 1, 1, 1)))
    for title, rows in help_panels(command, ctx):
        console.print(_panel(title, [_styled(row) for row in rows]))
    commands = getattr(command, "commands", {})
    if commands:
        rows = [(Text(name, "bold cyan"), Text(_first_paragraph(cmd.help))) for name, cmd in commands.items()]
        console.print(_panel("Commands", rows))


def _panels(params) -> list[tuple[str, list]]:
    panels: dict[str, list] = {}
    loose = []
    for param in params:
        if getattr(param, "hidden", False):
            continue
        title = getattr(param, "rich_help_panel", None)
        if title is None and param.param_type_name == "argument":
            title = "Arguments"
        (panels.setdefault(title, []) if title else loose).append(param)
    run = panels.pop(RUN_PANEL, None)
    last = (RUN_PANEL if run else "Options", (run or []) + loose)
    return [*panels.items(), *([last] if last[1] else [])]


def _panel(title: str, rows) -> Panel:
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(no_wrap=True)  # names are never cut
    table.add_column(ratio=1, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return Panel(table, title=title, title_align="left", border_style="dim")


def _styled(row: Row) -> tuple[Text, Text]:
    first = Text(row.names[0], "bold cyan")
    if row.metavar:
        first.append(f" {row.metavar}", "yellow")
    # the --no-x form on its own line, so a pair does not widen the column for every option
    name = Text("\n").join([first, *(Text(opt, "bold magenta") for opt in row.names[1:])])
    description = Text(row.help)
    if row.notes:
        description.append(f"{' ' if row.help else ''}[{'; '.join(row.notes)}]", "dim")
    return name, description


def _row(param) -> Row:
    if param.param_type_name == "argument":  # its name is its metavar
        return Row([_argument_name(param)], None, param.help or "", _notes(param))
    names = [", ".join(param.opts), *param.secondary_opts]
    return Row(names, None if param.is_flag else _metavar(param), param.help or "", _notes(param))


def _argument_name(param) -> str:
    return _metavar(param) + ("..." if param.nargs != 1 else "")


def _notes(param) -> list[str]:
    notes = []
    if param.required:
        notes.append("required")
    elif param.show_default and param.default is not None and param.name != "help":
        if param.param_type_name == "option" and param.is_flag:
            if param.secondary_opts:  # a --x/--no-x pair: say which one is on
                notes.append(f"default: {param.opts[0] if param.default else param.secondary_opts[0]}")
        else:
            notes.append(f"default: {param.default}")
    domain = domain_of(param)
    if domain is not None:
        notes.append(domain.brief)
    return notes


def _metavar(param) -> str:
    if param.metavar:
        return param.metavar
    if param.param_type_name == "argument":
        return param.name.upper()
    return _METAVARS.get(param.type_descriptor.annotation, "TEXT")


def _first_paragraph(text: str | None) -> str:
    return inspect.cleandoc(text or "").split("\n\n")[0].replace("\n", " ")
