"""`--help` of every command at 80 columns: each option name whole, a conventional metavar, room to read the help."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command

from iswcli.cli import app
from iswcli.cli_help import IswtCommand

GROUP = get_command(app)
COMMANDS = sorted(GROUP.commands)
WIDTH = 80
MIN_DESCRIPTION = 40  # characters left for the description beside the widest option name


def _help(cli, monkeypatch, *command: str) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def _options(command):
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_every_option_name_is_whole_and_its_description_has_room(cli, monkeypatch, name):
    command = GROUP.commands[name] if name else GROUP
    lines = _help(cli, monkeypatch, *([name] if name else []))
    text = "\n".join(lines)
    assert max(map(len, lines)) <= WIDTH
    assert "…" not in text
    for param in _options(command):
        for opt in [*param.opts, *param.secondary_opts]:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), f"{name} {opt} is cut or missing"
        first = next(line for line in lines if re.match(rf"│ {re.escape(param.opts[0])}\b", line))
        # the description starts after the name column: the first run of two spaces after the name
        start = first.index("  ", 2 + len(param.opts[0])) + 2
        while first[start] == " ":
            start += 1
        assert WIDTH - 2 - start >= MIN_DESCRIPTION, f"{name} {param.opts[0]}: description {WIDTH - 2 - start} wide"


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_metavars_are_conventional(cli, monkeypatch, name):
    command = GROUP.commands[name] if name else GROUP
    lines = _help(cli, monkeypatch, *([name] if name else []))
    assert not re.search(r"<(str|int|float|bool|list)|range|9223372036854775807", "\n".join(lines))
    for param in _options(command):
        first = next(line for line in lines if re.match(rf"│ {re.escape(param.opts[0])}\b", line))
        metavar = re.match(rf"│ {re.escape(', '.join(param.opts))}(?: ([A-Z/]+))?  ", first)
        assert metavar, f"{name} {param.opts[0]}: {first}"
        if param.is_flag:
            assert metavar.group(1) is None, f"{name} {param.opts[0]} is a flag: no metavar"
        else:
            assert metavar.group(1) in {"TEXT", "INTEGER", "FLOAT", "PATH", "FILE", "I/N"}, first


def test_train_groups_its_options_by_concern(cli, monkeypatch):
    lines = _help(cli, monkeypatch, "train")
    panels = [m.group(1) for line in lines if (m := re.match(r"╭─ (.+?) ─", line))]
    assert panels == [
        "Inputs",
        "Objective",
        "LoRA",
        "Optimization",
        "Evaluation during training",
        "Tracking and checkpoints",
        "Run",
    ]
    assert re.search(r"--lr FLOAT\s+Learning rate", "\n".join(lines))
    assert re.search(r"--seed INTEGER\s", "\n".join(lines))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_every_command_is_in_a_panel(name):
    command = GROUP.commands[name]
    assert isinstance(command, IswtCommand), f"{name}: declare it with @app.command() on the IswtApp"
    loose = [p.opts[0] for p in _options(command) if not getattr(p, "rich_help_panel", None)]
    assert loose == [], f"{name}: give these options a rich_help_panel: {loose}"
