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

from iswcli import artifacts, console
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


# --------------------------------------------------------------------------- issue 35: evaluate before sampling


def _z_edited(tmp_path, edit) -> list[str]:
    """An estimate-z artifact at beta 1 of the tiny prompts, its table edited (provenance kept)."""
    pids, idx = ["colour", "colour", "planet", "planet"], [0, 1, 0, 1]
    samples = write_samples(tmp_path / "own.parquet", pids, idx)
    scores = write_scores(tmp_path / "c.parquet", pids, idx, [0.0, 1.0, 1.0, 0.0])
    args = ["estimate-z", "--beta", "1", "--proposal", samples, "--scores", scores, "--out", tmp_path / "z.parquet"]
    from typer.testing import CliRunner

    from iswcli.cli import app

    assert CliRunner().invoke(app, [str(a) for a in args]).exit_code == 0
    meta = pq.ParquetFile(tmp_path / "z.parquet").metadata.metadata
    pq.write_table(edit(pq.read_table(tmp_path / "z.parquet")).replace_schema_metadata(meta), tmp_path / "z.parquet")
    return ["--z", str(tmp_path / "z.parquet")]


def _nan_log_z(table):
    log_z = [float("nan")] + table["log_z"].to_pylist()[1:]
    return table.set_column(table.schema.get_field_index("log_z"), "log_z", pa.array(log_z, pa.float64()))


def _prompts_with(tmp_path, answers) -> str:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({**p, "answers": answers if i else p["answers"]}) + "\n"
                            for i, p in enumerate(PROMPTS)))  # fmt: skip
    return str(path)


EVALUATE_EARLY_CASES = {
    "z with a NaN log Z": (lambda t: _z_edited(t, _nan_log_z), None, "log_z is not finite for prompt 'colour'"),
    "z missing a prompt": (lambda t: _z_edited(t, lambda z: z.slice(0, 1)), None, "has no log Z for 1 evaluated"),
    "an answer holding the stop token": (lambda t: [], {"Red<|im_end|>": 1.0}, "contains a stop token"),
    "an answer longer than --max-new-tokens": (lambda t: [], {"one two three four five": 1.0}, "more than --max-new"),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_EARLY_CASES))
def test_evaluate_checks_what_needs_no_samples_before_the_first(cli, tiny_model_dir, tiny_samples, tmp_path, case):
    make_flags, answers, shown = EVALUATE_EARLY_CASES[case]
    prompts = _prompts_with(tmp_path, answers) if answers else tiny_samples[0]
    flags = make_flags(tmp_path)
    before = _files(tmp_path)
    result = cli(*_evaluate_args(tiny_model_dir, prompts, tmp_path / "e.parquet"), *flags)
    assert_one_line_error(result, shown)
    assert _files(tmp_path) == before  # no e.samples.parquet: refused before sampling


def _target(path, beta: float, pids) -> None:
    from iswcli.target_eval import target_spec

    spec = target_spec()
    rows = [{"prompt_id": p, "beta": beta, "n_answers": 1, **{c: 0.5 for c in spec.schema.names[3:-3]}} for p in pids]
    table = pa.Table.from_pylist([{**r, "answers": "[]", "p_answers": [], "p_answers_target": []} for r in rows],
                                 schema=spec.schema)  # fmt: skip
    artifacts.write_artifact(table, str(path), spec, artifacts.make_provenance("evaluate", {}))


def test_compare_never_pairs_targets_of_different_betas(cli, tmp_path):
    keys = [(pid, j, "") for pid in ("a", "b") for j in (0, 1)]
    a, b = write_eval(tmp_path / "a.parquet", keys), write_eval(tmp_path / "b.parquet", keys)
    _target(tmp_path / "a.target.parquet", 2.0, ["a", "b"])
    _target(tmp_path / "b.target.parquet", 3.0, ["a", "b"])
    assert_one_line_error(cli("evaluate", "--compare", a, b), "measures pi* at beta 2 and", "at beta 3")
    _target(tmp_path / "b.target.parquet", 2.0, ["a", "b"])
    assert cli("evaluate", "--compare", a, b).exit_code == 0


# --------------------------------------------------------------------------- issue 35: train's semantic checks


def _train(toy_model_dir, toy_pipeline, run, *extra) -> list:
    from tests.toy import train_args

    return train_args(toy_pipeline, toy_model_dir, run, *extra)


TRAIN_REFUSALS = {
    "dpg given pairs": (["--loss", "dpg", "--z", "{z}", "--pairs", "{z}"], "--pairs: --loss dpg does not read it"),
    "tb given a KL coefficient": (["--loss", "tb", "--z", "{z}", "--kl-coef", "0.5"], "--kl-coef 0.5: --loss tb"),
    "sft given a learned z": (["--loss", "sft", "--z-mode", "learned"], "--z-mode learned: --loss sft does not"),
    "curves against another beta than the z's": (
        ["--loss", "tb", "--z", "{z}", "--eval-target-every", "2", "--eval-target-beta", "3"],
        "--eval-target-beta 3: --loss tb trains toward pi* at the beta of --z",
    ),
    "a GPU the machine lacks": (["--loss", "sft", "--device", "cuda:99"], "--device cuda:99: "),
}


@pytest.mark.parametrize("case", sorted(TRAIN_REFUSALS))
def test_train_refuses_flags_it_would_ignore_or_misread(cli, toy_model_dir, toy_pipeline, tmp_path, case):
    extra, shown = TRAIN_REFUSALS[case]
    extra = [str(a).replace("{z}", str(toy_pipeline / "z.parquet")) for a in extra]
    run = tmp_path / "run"
    assert_one_line_error(cli(*_train(toy_model_dir, toy_pipeline, run, *extra)), shown)
    assert not run.exists()


def test_max_grad_norm_zero_means_no_clipping(cli, toy_model_dir, toy_pipeline, tmp_path):
    common = [
        "--loss",
        "tb",
        "--z",
        toy_pipeline / "z.parquet",
        "--batch-size",
        "16",
        "--max-steps",
        "3",
        "--lr",
        "1e-2",
    ]
    logs = {}
    for norm in ("0", "1e9", "1e-6"):
        run = tmp_path / f"run-{norm}"
        assert cli(*_train(toy_model_dir, toy_pipeline, run, *common, "--max-grad-norm", norm)).exit_code == 0
        logs[norm] = pq.read_table(run / "train_log.parquet").column("loss").to_pylist()
    assert logs["0"] == logs["1e9"]  # 0: the unclipped run, step for step
    assert logs["0"] != logs["1e-6"]  # (a real clip changes it)


def _checkpointed(cli, toy_model_dir, toy_pipeline, run) -> list:
    """A tb run cut off after its step-2 checkpoint, and the command that resumes it."""
    args = ["--loss", "tb", "--z", toy_pipeline / "z.parquet", "--batch-size", "16", "--max-steps", "4",
            "--save-every", "2"]  # fmt: skip
    assert cli(*_train(toy_model_dir, toy_pipeline, run, *args)).exit_code == 0
    for name in ("manifest.json", "train_log.parquet", "adapter_model.safetensors"):
        (run / name).unlink()
    return _train(toy_model_dir, toy_pipeline, run, *args, "--resume")


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


RESUME_REFUSALS = {
    "a truncated state.pt": (lambda cp: _truncate(cp / "state.pt"), "state.pt is not a readable checkpoint"),
    "a state.pt of garbage": (lambda cp: cp.joinpath("state.pt").write_bytes(b"\0" * 64), "not a readable checkpoint"),
}


@pytest.mark.parametrize("case", sorted(RESUME_REFUSALS))
def test_a_resume_checks_its_checkpoint_before_loading_the_model(cli, toy_model_dir, toy_pipeline, tmp_path, case):
    run = tmp_path / "run"
    resume = _checkpointed(cli, toy_model_dir, toy_pipeline, run)
    damage, shown = RESUME_REFUSALS[case]
    damage(run / "checkpoints" / "step-0000002")
    before = sorted(str(p) for p in run.rglob("*"))
    assert_one_line_error(cli(*resume), shown)
    assert sorted(str(p) for p in run.rglob("*")) == before


# --------------------------------------------------------------------------- issue 35: report and the study table


def _study_run(run, rows) -> None:
    """A finished run as `iswt report` and the table script find it: manifest, a train log, curves."""
    from iswcli.target_curves import PER_PROMPT_FILE

    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"config": {"lr": 1e-5}}))
    pq.write_table(
        pa.Table.from_pylist([{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}]), run / "train_log.parquet"
    )
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), run / PER_PROMPT_FILE)


def _curve_rows(steps=(0, 4), groups=("train", "heldout")) -> list[dict]:
    metrics = {"kl_set": 0.5, "tv_set": 0.1, "p_valid": 0.5, "eff_answers": 2.0}
    return [{"step": s, "group": g, "prompt_id": p, **metrics} for s in steps for g in groups for p in ("p0", "p1")]


def _broken(kind: str):
    def make(run):
        from iswcli.target_curves import PER_PROMPT_FILE

        _study_run(run, _curve_rows(steps=(4,)) if kind == "no step 0" else _curve_rows())
        path = run / PER_PROMPT_FILE
        if kind == "truncated":
            _truncate(path)
        elif kind == "corrupt":
            path.write_bytes(b"PAR1" + b"\xab" * 200 + b"PAR1")
        elif kind == "empty":
            pq.write_table(pa.Table.from_pylist(_curve_rows()).slice(0, 0), path)

    return make


BROKEN_CURVES = ("corrupt", "truncated", "empty", "no step 0")


@pytest.mark.parametrize("kind", BROKEN_CURVES)
def test_report_leaves_out_a_run_with_broken_curves_with_a_note(cli, tmp_path, kind):
    _broken(kind)(tmp_path / "study" / "n8-s0" / "disa")
    write_scores(tmp_path / "study" / "c.parquet", PIDS, IDX, REWARDS)  # something to report besides
    result = cli("report", tmp_path / "study", "--out", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    assert "target_curves.parquet" in result.stderr and "left out" in result.stderr
    assert (tmp_path / "r.html").exists()


def test_a_report_refused_half_way_leaves_the_earlier_figures_as_they_were(cli, tmp_path, monkeypatch):
    import stages.report
    from iswcli.errors import IswtError

    write_scores(tmp_path / "c.parquet", PIDS, IDX, REWARDS)
    assert cli("report", tmp_path / "c.parquet", "--out", tmp_path / "r.html").exit_code == 0
    earlier = {p.name: p.read_bytes() for p in (tmp_path / "r_figures").iterdir()}
    assert earlier

    def refuse(*args):  # a refusal after the rewards section has drawn its figures
        raise IswtError("refused half-way")

    monkeypatch.setattr(stages.report, "target_by_n_section", refuse)
    write_scores(tmp_path / "c.parquet", PIDS, IDX, [9.0, *REWARDS[1:]])  # other figures if they were drawn
    assert_one_line_error(cli("report", tmp_path / "c.parquet", "--out", tmp_path / "r.html"), "refused half-way")
    assert {p.name: p.read_bytes() for p in (tmp_path / "r_figures").iterdir()} == earlier
    assert _files(tmp_path) == ["c.parquet", "r.html", "r_figures"]  # no staging directory left


@pytest.fixture(scope="module")
def table_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "sample_efficiency_table.py"
    spec = importlib.util.spec_from_file_location("sample_efficiency_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLE_SCRIPT_CASES = {
    "no arguments": (lambda t: [], "usage: sample_efficiency_table.py OUT"),
    "a missing directory": (lambda t: [str(t / "nope")], "nope: no such directory"),
    "an empty directory": (lambda t: [str(t)], "holds no finished grid run"),
    "a run without curves": (lambda t: [_made(t, "n8-s0/disa", None)], "no target_curves.parquet"),
    "a run without held-out curves": (
        lambda t: [_made(t, "n8-s0/disa", _curve_rows(groups=("train",)))],
        "no held-out curves (trained without --eval-prompts)",
    ),
    "corrupt curves": (lambda t: [_made(t, "n8-s0/disa", "corrupt")], "not a readable Parquet file"),
    "a cell not named nN-sS": (lambda t: [_made(t, "n8-sx/disa", _curve_rows())], "must be named nN-sSEED"),
    "permute without --seed": (lambda t: ["permute", "s.parquet", "o.parquet"], "permute needs SCORES OUT --seed"),
    "grid-lr of a missing run": (lambda t: ["grid-lr", str(t / "n8-s0" / "disa")], "no finished run there"),
    "lr with too few arguments": (lambda t: ["lr", str(t)], "lr: expects 2 argument(s)"),
    "grid-lr of a run whose manifest is not JSON": (
        lambda t: ["grid-lr", _made(t, "n8-s0/disa", _curve_rows(), manifest="{oops")],
        "manifest.json: not a readable train manifest",
    ),
}


def _made(root, where: str, rows, manifest: str | None = None) -> str:
    if rows == "corrupt":
        _broken("corrupt")(root / where)
    else:
        _study_run(root / where, rows)
    if manifest is not None:
        (root / where / "manifest.json").write_text(manifest)
        return str(root / where)
    return str(root)


@pytest.mark.parametrize("case", sorted(TABLE_SCRIPT_CASES))
def test_the_study_table_script_says_what_is_missing_in_one_line(table_script, tmp_path, capsys, case):
    argv = TABLE_SCRIPT_CASES[case][0](tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        table_script.main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and TABLE_SCRIPT_CASES[case][1] in lines[0], captured.err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no plot written


# --------------------------------------------------------------------------- issue 35: the hub offline


def test_hub_prompts_offline_are_one_line_at_once(cli, tmp_path, monkeypatch):
    import time

    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    result = cli("sample", "--prompts", "hf:someorg/somedata", "--out", tmp_path / "s.parquet")
    assert_one_line_error(result, "hf:someorg/somedata: the Hugging Face Hub (127.0.0.1) is unreachable")
    assert time.monotonic() - start < 10 and _files(tmp_path) == []


def test_a_refused_resume_prints_no_warning_before_its_one_line(cli, toy_model_dir, toy_pipeline, tmp_path):
    import shutil

    from tests.toy import train_args
    from tests.toy import write_scores as write_toy_scores

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(toy_pipeline / "samples.parquet", data / "samples.parquet")
    write_toy_scores(data / "samples.parquet", data / "scores.parquet", reward_of=lambda ids: 1.0)  # no signal
    run = tmp_path / "run"
    args = ["--loss", "grpo", "--batch-size", "16", "--max-steps", "4", "--save-every", "2"]
    loud = lambda *extra: train_args(data, toy_model_dir, run, *args, *extra)[1:]  # noqa: E731 (without --quiet)
    first = cli(*loud())
    assert first.exit_code == 0 and "no reward signal" in first.stderr  # the warning of a run that goes ahead
    for name in ("manifest.json", "train_log.parquet", "adapter_model.safetensors"):
        (run / name).unlink()
    refused = cli(*loud("--lr", "3e-4"))
    assert_one_line_error(refused, "holds an unfinished run with a different lr")


def test_a_resume_whose_target_reference_is_gone_is_refused(cli, tiny_model_dir, tiny_samples, tmp_path):
    # Rebuilt from the trained policy, pi* would be another target than the earlier curve rows measured.
    samples = tiny_samples[1]
    scores = tmp_path / "c.parquet"
    assert cli("score", "--samples", samples, "--reward", "set", "--batch-size", "1", "--out", scores).exit_code == 0
    run = tmp_path / "run"
    args = ["--quiet", "train", "--model", tiny_model_dir, "--samples", samples, "--scores", scores, "--loss", "sft",
            "--sft-select", "all", "--batch-size", "2", "--max-steps", "2", "--save-every", "1",
            "--eval-target-every", "1", "--eval-target-beta", "1", "--out", run]  # fmt: skip
    assert cli(*args).exit_code == 0
    for name in ("manifest.json", "train_log.parquet", "adapter_model.safetensors", "target_reference.json"):
        (run / name).unlink()
    assert_one_line_error(cli(*args), "target_reference.json is gone")


@pytest.mark.parametrize("answers, shown", [({"Red<|im_end|>": 1.0}, "contains a stop token")])
def test_train_refuses_held_out_answers_no_sample_could_be(cli, tiny_model_dir, tiny_samples, tmp_path, answers, shown):
    samples = tiny_samples[1]
    scores = tmp_path / "c.parquet"
    assert cli("score", "--samples", samples, "--reward", "set", "--batch-size", "1", "--out", scores).exit_code == 0
    run = tmp_path / "run"
    args = ["train", "--model", tiny_model_dir, "--samples", samples, "--scores", scores, "--loss", "sft",
            "--max-steps", "1", "--eval-target-every", "1", "--eval-target-beta", "1",
            "--eval-prompts", _prompts_with(tmp_path, answers), "--out", run]  # fmt: skip
    assert_one_line_error(cli(*args), "--eval-prompts", "prompt 'planet'", shown)
    assert not run.exists()


@pytest.mark.parametrize("reward, ok", [("math", True), ("math:flexible", True), ("code", False)])
def test_an_infinite_timeout_is_no_limit_for_reading_answers_and_refused_for_running_code(reward, ok):
    # Library callers (the CLI bounds --timeout itself): no OverflowError anywhere.
    from iswcli.errors import IswtError
    from iswcli.rewards import RewardItem, RewardOptions, make_reward

    if not ok:
        with pytest.raises(IswtError, match="finite time limit"):
            make_reward(reward, RewardOptions(timeout_s=float("inf")))
        return
    result = make_reward(reward, RewardOptions(timeout_s=float("inf"))).score_batch(
        [RewardItem("Q?", r"So \boxed{12}.", {"answer": "12"})]
    )[0]
    assert result.reward == 1.0
