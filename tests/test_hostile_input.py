"""Hostile but realistic input on the newer surfaces (issue #26), one parametrized test per class of failure.

The promise: one line on stderr, exit code 2, nothing created, changed or
lost; user text (paths, ids, flag values, answers) printed verbatim.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import console
from tests.test_estimate_z import assert_one_line_error, write_samples, write_scores
from tests.test_evaluate import write_eval

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


# --------------------------------------------------------------------------- 2. refusals, not internal errors


def _corrupt_pages(path: str) -> str:
    """Overwrite every data page and keep the footer: the file opens, its rows do not read."""
    data = bytearray(open(path, "rb").read())
    footer = int.from_bytes(data[-8:-4], "little")
    data[4 : len(data) - 8 - footer] = b"\xab" * (len(data) - 12 - footer)
    open(path, "wb").write(data)
    return path


def _garbage_target(tmp_path) -> list:
    keys = [(pid, j, "") for pid in ("a", "b") for j in (0, 1)]
    a, b = write_eval(tmp_path / "a.parquet", keys), write_eval(tmp_path / "b.parquet", keys)
    (tmp_path / "a.target.parquet").write_bytes(b"not parquet")
    write_scores(tmp_path / "b.target.parquet", PIDS, IDX, REWARDS)  # another kind of artifact
    return ["evaluate", "--compare", a, b]


INTERNAL_ERROR_CASES = {
    "negative seed in estimate-z": (
        lambda t: ["estimate-z", "--beta", "1", "--seed", "-1", "--proposal", "s.parquet", "--scores", "c.parquet"],
        "--seed",
    ),
    "negative seed in weight-pairs": (
        lambda t: [
            "weight-pairs",
            "--method",
            "rso",
            "--seed",
            "-1",
            "--samples",
            "s.parquet",
            "--scores",
            "c.parquet",
        ],
        "--seed",
    ),
    "corrupt pages in a scores file": (
        lambda t: ["estimate-z", "--beta", "1", "--proposal", "s.parquet", "--scores", _corrupt_pages("c.parquet")],
        "c.parquet: not a readable Parquet file",
    ),
    "corrupt pages shown by info": (lambda t: ["info", _corrupt_pages("s.parquet")], "not a readable Parquet file"),
    "compare with garbage targets": (_garbage_target, "a.target.parquet: not a readable Parquet file"),
    "report figures path is a file": (
        lambda t: (open("r_figures", "w").close(), ["report", "c.parquet", "--out", "r.html"])[1],
        "r_figures, which is a file",
    ),
    "run directory that takes no files": (
        lambda t: ["train", "--loss", "sft", "--force", "--samples", "s.parquet", "--scores", "c.parquet"],
        "cannot create files in /proc/self",
    ),
    "sample count past int32": (lambda t: ["sample", "--n", "2147483648"], "--n 2147483648: must be below 2^31"),
}
OUT = {"run directory that takes no files": "/proc/self/iswt-run", "compare with garbage targets": None}


@pytest.mark.parametrize("case", sorted(INTERNAL_ERROR_CASES))
def test_bad_input_is_refused_not_an_internal_error(cli, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    write_samples(tmp_path / "s.parquet", PIDS, IDX)
    write_scores(tmp_path / "c.parquet", PIDS, IDX, REWARDS)
    make_args, shown = INTERNAL_ERROR_CASES[case]
    args = make_args(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    out = OUT.get(case, "o.parquet")
    if out and "--out" not in args and args[0] != "info":
        args += ["--out", out]
    assert_one_line_error(cli(*args), shown)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_cache_directory_that_is_a_file_is_refused_before_the_model_is_made(cli, tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("ISWT_CACHE", str(tmp_path / "cache"))
    result = cli("sample", "--limit", "1", "--n", "1", "--out", tmp_path / "s.parquet")
    assert_one_line_error(result, "ISWT_CACHE", "cache is a file, not a directory")
    assert _files(tmp_path) == ["cache"]


# --------------------------------------------------------------------------- 3. nothing silently wrong


def _with_wide_ids(path: str) -> None:
    """Rewrite an artifact as a tool outside iswt might: int64 sample_idx k * 2**33 + 7 (int32 keeps only 7)."""
    meta = pq.ParquetFile(path).metadata.metadata
    table = pq.read_table(path)
    wide = pa.array([k * 2**33 + 7 for k in table["sample_idx"].to_pylist()], pa.int64())
    table = table.set_column(table.schema.get_field_index("sample_idx"), "sample_idx", wide)
    pq.write_table(table.replace_schema_metadata(meta), path)


@pytest.mark.parametrize(
    "stage", [["weight-pairs", "--method", "iso", "--gamma", "1"], ["estimate-z", "--beta", "1", "--proposal"]]
)
def test_sample_idx_wider_than_int32_is_refused(cli, tmp_path, stage):
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX)
    scores = write_scores(tmp_path / "c.parquet", PIDS, IDX, REWARDS)
    for path in (samples, scores):
        _with_wide_ids(path)
    flag = [] if stage[0] == "estimate-z" else ["--samples"]
    result = cli(*stage, *flag, samples, "--scores", scores, "--out", tmp_path / "o.parquet")
    assert_one_line_error(result, "column 'sample_idx' holds 17179869191", "does not fit in int32")
    assert _files(tmp_path) == ["c.parquet", "s.parquet"]


# --------------------------------------------------------------------------- 4. nothing left behind


def test_a_killed_runs_spill_directory_is_swept_by_the_next_run(cli, tmp_path):
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX)
    scores = write_scores(tmp_path / "c.parquet", PIDS, IDX, REWARDS)
    stale = tmp_path / ".z.parquet.tmp-spill-dead"  # what `kill -9` of estimate-z leaves: DuckDB's spill directory
    (stale / "duckdb_temp_storage").mkdir(parents=True)
    result = cli(
        "estimate-z", "--beta", "1", "--proposal", samples, "--scores", scores, "--out", tmp_path / "z.parquet"
    )
    assert result.exit_code == 0, result.stderr
    assert _files(tmp_path) == ["c.parquet", "s.parquet", "z.parquet"]


def test_a_file_rewritten_in_place_with_its_mtime_set_back_is_hashed_again(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ISWT_CACHE", str(tmp_path / "cache"))
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX)
    scores = write_scores(tmp_path / "c.parquet", PIDS, IDX, REWARDS)
    other = write_scores(tmp_path / "other.parquet", PIDS, IDX, [4.0 if r == 3.0 else r for r in REWARDS])
    assert os.path.getsize(scores) == os.path.getsize(other)
    args = (
        "--json",
        "estimate-z",
        "--beta",
        "1",
        "--proposal",
        samples,
        "--scores",
        scores,
        "--out",
        tmp_path / "z.parquet",
    )
    assert cli(*args).exit_code == 0
    before = pq.read_table(tmp_path / "z.parquet")["log_z"].to_pylist()
    st = os.stat(scores)
    with open(scores, "r+b") as f:  # same inode, same size
        f.write(open(other, "rb").read())
    os.utime(scores, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = cli(*args)
    assert result.exit_code == 0 and "up to date" not in result.stderr
    assert pq.read_table(tmp_path / "z.parquet")["log_z"].to_pylist() != before


def test_a_tracker_that_cannot_write_is_refused_before_training(cli, tmp_path, monkeypatch):
    pytest.importorskip("trackio")
    (tmp_path / "trackio").write_text("")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    args = ["train", "--loss", "sft", "--report-to", "trackio", "--samples", "s.parquet", "--scores", "c.parquet"]
    assert_one_line_error(cli(*args, "--out", tmp_path / "run"), "TRACKIO_DIR", "is a file, not a directory")
    assert _files(tmp_path) == ["trackio"]


# --------------------------------------------------------------------------- 4 and 5. answer sets checked first

PROMPTS = [
    {"prompt_id": "colour", "prompt": "Say red", "answers": {"Red": 1.0}},
    {"prompt_id": "planet", "prompt": "Name a planet", "answers": {"Mars": 1.0, "Venus": 0.5}},
]


@pytest.fixture(scope="module")
def tiny_samples(tiny_model_dir, tmp_path_factory):
    """Two prompts with answer sets, 2 samples each of at most 4 tokens, from the tiny model."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    where = tmp_path_factory.mktemp("tiny-samples")
    prompts = where / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    out = where / "samples.parquet"
    args = ["sample", "--model", tiny_model_dir, "--prompts", prompts, "--n", "2", "--max-new-tokens", "4"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--batch-size", "1", "--out", out]])
    assert result.exit_code == 0, result.stderr
    return str(prompts), str(out)


def _with_last_answers(samples: str, answers, path) -> str:
    """The samples with the last prompt's answer set replaced (as a hand-edited prompts file would give)."""
    meta = pq.ParquetFile(samples).metadata.metadata
    table = pq.read_table(samples)
    fields = [
        json.dumps({**json.loads(f), "answers": answers}) if pid == "planet" else f
        for pid, f in zip(table["prompt_id"].to_pylist(), table["task_fields"].to_pylist())
    ]
    table = table.set_column(table.schema.get_field_index("task_fields"), "task_fields", pa.array(fields))
    pq.write_table(table.replace_schema_metadata(meta), path)
    return str(path)


BAD_ANSWERS = {
    "empty": ({}, "must be a non-empty object"),
    "a list": (["Mars"], "must be a non-empty object"),
    "a non-number reward": ({"Mars": "one"}, "rewards must be finite numbers"),
    "a NaN reward": ({"Mars": float("nan")}, "rewards must be finite numbers"),
    "an empty string": ("", "is not a JSON object"),
    "a stop token inside": ({"Red<|im_end|>": 1.0}, "contains a stop token"),
    "longer than the samples": ({"one two three four five six": 1.0}, "more than --max-new-tokens 4"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_bad_answer_sets_are_refused_before_scoring_and_leave_nothing(cli, tiny_samples, tmp_path, case):
    answers, shown = BAD_ANSWERS[case]
    samples = _with_last_answers(tiny_samples[1], answers, tmp_path / "s.parquet")
    result = cli("score", "--samples", samples, "--reward", "set", "--batch-size", "1", "--out", tmp_path / "o.parquet")
    assert_one_line_error(result, "prompt_id='planet'", shown)  # one line: no progress bar before it
    assert _files(tmp_path) == ["s.parquet"]


def _evaluate_args(tiny_model_dir, prompts, out):
    return ["evaluate", "--model", tiny_model_dir, "--prompts", prompts, "--reward", "set", "--n", "2",
            "--max-new-tokens", "4", "--target-beta", "1", "--out", out]  # fmt: skip


def _z_of_beta_2(tmp_path, samples):
    scores = write_scores(tmp_path / "c.parquet", PIDS, IDX, REWARDS)
    own = write_samples(tmp_path / "own.parquet", PIDS, IDX)
    return ["--z", _estimate_z(own, scores, tmp_path / "z.parquet")]


def _estimate_z(samples, scores, out) -> str:
    from typer.testing import CliRunner

    from iswcli.cli import app

    args = ["estimate-z", "--beta", "2", "--proposal", samples, "--scores", scores, "--out", out]
    assert CliRunner().invoke(app, [str(a) for a in args]).exit_code == 0
    return str(out)


EVALUATE_CASES = {
    "z of another beta": (_z_of_beta_2, "has beta 2.0, but --target-beta is 1.0"),
    "z that is a samples file": (lambda t, s: ["--z", s], "is a samples artifact, expected z"),
    "answers as a list": (lambda t, s: [], "must be a non-empty object"),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_evaluate_refuses_before_sampling(cli, tiny_model_dir, tiny_samples, tmp_path, case):
    prompts, samples = tiny_samples
    if case == "answers as a list":
        listed = [{**p, "answers": list(p["answers"])} for p in PROMPTS]
        prompts = tmp_path / "p.jsonl"
        prompts.write_text("".join(json.dumps(p) + "\n" for p in listed))
    make_flags, shown = EVALUATE_CASES[case]
    flags = make_flags(tmp_path, samples)
    before = _files(tmp_path)
    result = cli(*_evaluate_args(tiny_model_dir, prompts, tmp_path / "e.parquet"), *flags)
    assert_one_line_error(result, shown)
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    "stage",
    [["estimate-z", "--beta", "2", "--proposal"], ["weight-pairs", "--method", "iso", "--gamma", "1", "--samples"]],
)
def test_a_reward_too_large_to_compute_with_is_named_in_one_line(cli, tmp_path, stage):
    samples = write_samples(tmp_path / "s.parquet", PIDS, IDX)
    scores = write_scores(tmp_path / "c.parquet", PIDS, IDX, [0.0, 1e308, *REWARDS[2:]])
    result = cli(*stage, samples, "--scores", scores, "--out", tmp_path / "o.parquet")
    assert_one_line_error(result, "c.parquet: column 'reward' holds 1e+308 at (prompt_id='a', sample_idx=1)")
    assert _files(tmp_path) == ["c.parquet", "s.parquet"]
