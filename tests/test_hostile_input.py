"""Hostile but realistic input on the newer surfaces (issue #26), one parametrized test per class of failure.

The promise: one line on stderr, exit code 2, nothing created, changed or
lost; user text (paths, ids, flag values, answers) printed verbatim.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import console
from tests.test_estimate_z import assert_one_line_error, write_samples, write_scores

PIDS = ["a", "a", "a", "b", "b", "b"]
IDX = [0, 1, 2, 0, 1, 2]
REWARDS = [0.0, 1.0, 2.0, 1.0, 0.0, 3.0]


def _files(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


# --------------------------------------------------------------------------- 1. user text is not markup

MARKUP_CASES = {
    "missing input with brackets": (
        ["estimate-z", "--beta", "1", "--proposal", "s.parquet", "--scores", "old[/v1].parquet", "--out", "z.parquet"],
        "old[/v1].parquet",
    ),
    "info of a glob with brackets": (["info", "a[/x].parquet"], "a[/x].parquet"),
    "emoji code in a flag value": (
        ["score", "--samples", "s.parquet", "--reward", "set:abc", "--out", "o.parquet"],
        "set:abc:",
    ),
    "newline in a path": (["info", "a\nb[/x].parquet"], "a\\nb[/x].parquet"),
}


@pytest.mark.parametrize("case", sorted(MARKUP_CASES))
def test_user_text_is_printed_verbatim(cli, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    write_samples(tmp_path / "s.parquet", PIDS, IDX)
    args, shown = MARKUP_CASES[case]
    assert_one_line_error(cli(*args), shown)
    assert _files(tmp_path) == ["s.parquet"]


def test_warnings_and_tables_print_brackets_and_colons_verbatim(cli, tmp_path, capsys):
    console.warn("prompt 'planet[/b]' ties :abc: [bold]x")
    console.fail("id 'a\nb'")
    err = capsys.readouterr().err
    assert "warning: prompt 'planet[/b]' ties :abc: [bold]x\n" in err
    assert "error: id 'a\\nb'\n" in err
    scores = write_scores(tmp_path / "scores[v2].parquet", PIDS, IDX, REWARDS)
    result = cli("info", scores)
    assert result.exit_code == 0 and "scores[v2].parquet" in result.stdout


@pytest.mark.parametrize(
    "args,shown",
    [
        (["estimate-z", "--beta", "abc"], "'--beta'"),
        (["trian"], "No such command 'trian'"),
        (["sample", "--bogus"], "--bogus"),
        (["weight-pairs"], "Missing option"),
    ],
)
def test_usage_errors_are_one_line(cli, args, shown):
    assert_one_line_error(cli(*args), shown)
