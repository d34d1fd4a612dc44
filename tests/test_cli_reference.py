"""docs/reference/ is what the CLI renders now: a changed flag or help text without the regenerated page fails."""

from __future__ import annotations

from iswcli import cli_reference


def test_checked_in_reference_matches_the_cli():
    stale = cli_reference.stale()
    assert not stale, f"docs/reference is stale ({', '.join(stale)}): run python -m iswcli.cli_reference"


def test_every_command_and_option_is_on_its_page():
    from typer.main import get_command

    from iswcli.cli import app

    pages = cli_reference.render()
    for name, command in get_command(app).commands.items():
        page = pages[f"{name}.md"]
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"{opt}" in page, f"{name}: {opt} missing from its page"


def test_a_changed_page_is_found_and_rewritten(tmp_path):
    cli_reference.write(tmp_path)
    assert cli_reference.stale(tmp_path) == []
    (tmp_path / "train.md").write_text("old")
    (tmp_path / "gone.md").write_text("a command that no longer exists")
    assert cli_reference.stale(tmp_path) == ["gone.md", "train.md"]
    cli_reference.write(tmp_path)
    assert cli_reference.stale(tmp_path) == []
    assert not (tmp_path / "gone.md").exists()


def test_table_cells_stay_one_line():
    assert cli_reference._cell("a | b\n  c") == "a \\| b c"
