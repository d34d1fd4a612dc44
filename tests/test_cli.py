"""The command line: help, version, and one-line errors with exit code 2 that leave disk untouched."""

from __future__ import annotations

import json

import pytest

from iswcli import __version__


def test_help_lists_built_subcommands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("sample", "info"):
        assert command in result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"iswt {__version__}"


def _write(path, text):
    path.write_text(text)
    return path


BAD_INPUTS = {
    "missing model path": (["--model", "/no/such/model"], "--model /no/such/model: no such directory"),
    "unknown alias": (["--model", "smollm9"], "--model smollm9: not a known alias"),
    "shard out of range": (["--shard", "3/2"], "--shard 3/2: the shard index i must satisfy 0 <= i < n"),
    "zero samples": (["--n", "0"], "--n 0: must be at least 1"),
    "bad top-p": (["--top-p", "0"], "--top-p 0.0: must be in (0, 1]"),
    "task and prompts": (["--task", "arith", "--prompts", "x.jsonl"], "give exactly one of --task or --prompts"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_flags_fail_in_one_line(cli, tmp_path, case):
    args, message = BAD_INPUTS[case]
    out = tmp_path / "samples.parquet"
    result = cli("sample", "--limit", "2", *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0
    assert message in result.stderr
    assert not out.exists()
    assert not (tmp_path / "samples.parquet.partial").exists()


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("no_id.jsonl", '{"prompt": "hi"}\n', "column 'prompt_id' is missing"),
        (
            "dupes.jsonl",
            '{"prompt_id": "a", "prompt": "x"}\n{"prompt_id": "a", "prompt": "y"}\n',
            "duplicate prompt_id 'a'",
        ),
        ("broken.jsonl", '{"prompt_id": "a", "prompt": \n', "not valid JSON"),
        ("missing.jsonl", None, "cannot read"),
    ],
)
def test_bad_prompt_files_fail_and_leave_existing_output(cli, tmp_path, name, content, message):
    prompts = tmp_path / name
    if content is not None:
        prompts.write_text(content)
    out = _write(tmp_path / "samples.parquet", "precious")
    result = cli("sample", "--prompts", prompts, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert out.read_text() == "precious"


def test_debug_shows_the_exception(cli, tmp_path):
    result = cli("--debug", "sample", "--task", "arith", "--prompts", "x.jsonl", "--out", tmp_path / "x.parquet")
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "IswtError"


def test_info_on_sharded_artifact(cli, tiny_model_dir, tmp_path):
    for i in range(2):
        args = ["--quiet", "sample", "--model", tiny_model_dir, "--limit", "4", "--n", "2"]
        out = tmp_path / "shards" / f"s{i}.parquet"
        assert cli(*args, "--max-new-tokens", "4", "--shard", f"{i}/2", "--out", out).exit_code == 0
    result = cli("--json", "info", str(tmp_path / "shards" / "*.parquet"))
    assert result.exit_code == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["kind"] == "samples"
    assert described["rows"] == 8
    assert len(described["files"]) == 2
    assert described["provenance"]["stage"] == "sample"
    assert "mean" in described["columns"]["logprob_q"]
    table = cli("info", str(tmp_path / "shards"))
    assert table.exit_code == 0
    assert "token_logprobs_q" in table.stdout and "made by: iswt sample" in table.stdout


def test_json_prints_the_typed_result_and_marks_a_cache_hit_reused(cli, tiny_model_dir, tmp_path):
    import dataclasses

    from stages.sample import SampleConfig, SampleResult, run

    out = tmp_path / "samples.parquet"
    args = ["sample", "--model", tiny_model_dir, "--limit", "2", "--n", "2", "--max-new-tokens", "4", "--out", out]
    first = cli("--json", *args)
    assert first.exit_code == 0, first.stderr
    ran = json.loads(first.stdout)
    assert ran["title"] == "iswt sample" and ran["reused"] is False
    assert ran["samples"] == 4 and len(ran["sha256"]) == 64 and sum(ran["finish_reasons"].values()) == 4

    again = cli("--json", *args)
    assert again.exit_code == 0, again.stderr
    hit = json.loads(again.stdout)
    assert hit["reused"] is True and hit["output"] == str(out) and hit["samples"] is None  # nothing ran
    assert "up to date, not re-run" in cli(*args).stdout  # the table says so too

    config = SampleConfig(out=str(out), model=tiny_model_dir, limit=2, n=2, max_new_tokens=4, task="arith")
    result = run(config)
    assert dataclasses.is_dataclass(result) and isinstance(result, SampleResult) and result.reused


def test_info_missing_path(cli, tmp_path):
    result = cli("info", tmp_path / "nothing.parquet")
    assert result.exit_code == 2
    assert "no such file or directory" in result.stderr


def test_compare_cell_without_common_prompts_reads_n_a():
    from iswcli.render import _ci

    nan = float("nan")
    assert _ci({"estimate": nan, "lo": nan, "hi": nan}, signed=True) == "n/a (no prompt with a value in both)"
    assert _ci({"estimate": 0.5, "lo": 0.25, "hi": 0.75}) == "0.500 [0.250, 0.750]"


def test_every_config_field_has_a_flag_with_the_same_default():
    """Each stage's config is what its flags say: no field without a flag, no drifted default."""
    import dataclasses

    import typer

    from iswcli.cli import app
    from stages import estimate_z, evaluate, judge_diversity, report, sample, score, train, weight_pairs

    configs = {
        "sample": sample.SampleConfig,
        "score": score.ScoreConfig,
        "estimate-z": estimate_z.EstimateZConfig,
        "weight-pairs": weight_pairs.WeightPairsConfig,
        "train": train.TrainConfig,
        "evaluate": evaluate.EvaluateConfig,
        "judge-diversity": judge_diversity.JudgeDiversityConfig,
        "report": report.ReportConfig,
    }
    commands = typer.main.get_command(app).commands
    for name, config in configs.items():
        flags = {p.name: p for p in commands[name].params}
        for field in dataclasses.fields(config):
            assert field.name in flags, f"iswt {name}: config field '{field.name}' has no flag"
            flag = flags[field.name]
            if field.default is dataclasses.MISSING or flag.default is None:
                continue  # required, or a flag left out means the config's own default
            parsed = flag.default
            if isinstance(field.default, tuple) and isinstance(parsed, str):  # comma-separated on the command line
                parsed = tuple(type(field.default[0])(v) for v in parsed.split(","))
            assert parsed == field.default, (
                f"iswt {name}: --{field.name} defaults to {flag.default!r}, config to {field.default!r}"
            )
