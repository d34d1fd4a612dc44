"""`--config FILE`: a TOML file of long flag names gives the stage the config the same flags would, and flags win."""

from __future__ import annotations

import importlib
import json

import pyarrow.parquet as pq
import pytest
from typer.main import get_command

from iswcli import artifacts
from iswcli.cli import app
from iswcli.errors import IswtError
from tests.test_estimate_z import write_samples, write_scores

# A command's flags as a config file's keys and values: a study cell's train command, and one per stage.
STUDY_CELL = {
    "model": "smollm2-135m",
    "samples": "cell/samples.parquet",
    "scores": "cell/scores.parquet",
    "loss": "sigmoid",
    "pairs": "cell/pairs-iso.parquet",
    "beta": 0.5,
    "eval-target-beta": 2.0,
    "max-steps": 48,
    "batch-size": 8,
    "batch-order": "shuffled",
    "eval-target-every": 48,
    "eval-prompts": "sets:test",
    "lr": 3e-5,
    "dpg-baseline": False,
    "seed": 1,
    "out": "cell/iso",
}
CASES = {
    "train": ("stages.train", STUDY_CELL),
    "sample": (
        "stages.sample",
        {"task": "sets", "split": "train", "limit": 16, "n": 32, "max-new-tokens": 8, "top-p": 0.9, "seed": 2}
        | {"chat-template": False, "out": "s.parquet"},
    ),
    "score": (
        "stages.score",
        {"samples": "s.parquet", "reward": "math", "timeout": 5, "workers": 2, "out": "r.parquet"},
    ),
    "estimate-z": (
        "stages.estimate_z",
        {
            "proposal": "s.parquet",
            "scores": "r.parquet",
            "beta": 2,
            "bootstrap": 100,
            "low-ess": 0.2,
            "out": "z.parquet",
        },
    ),
    "weight-pairs": (
        "stages.weight_pairs",
        {"samples": "s.parquet", "scores": "r.parquet", "method": "iso", "gamma": 1.0, "max-pairs-per-prompt": 8}
        | {"out": "p.parquet"},
    ),
    "evaluate": (
        "stages.evaluate",
        {"task": "sets", "n": 4, "target-beta": 2.0, "temperature": 0.0, "out": "e.parquet"},
    ),
    "judge-diversity": (
        "stages.judge_diversity",
        {"samples": "e.parquet", "n": 4, "batch-size": 2, "out": "d.parquet"},
    ),
}


def _flags(values: dict) -> list[str]:
    flags = []
    for key, value in values.items():
        if isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no-{key}")
        else:
            flags += [f"--{key}", str(value)]
    return flags


def _toml(path, values: dict) -> str:
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return str(path)


@pytest.fixture
def captured(monkeypatch):
    """Each stage's run() records the config it was given and stops there."""
    configs = []

    def run(config):
        configs.append(config)
        raise IswtError("captured")

    for module in {module for module, _ in CASES.values()} | {"stages.report"}:
        monkeypatch.setattr(importlib.import_module(module), "run", run)
    return configs


def _config_of(cli, captured, *args):
    result = cli(*args)
    assert result.exit_code == 2 and "captured" in result.stderr, result.output
    return captured.pop()


@pytest.mark.parametrize("command", sorted(CASES))
def test_a_config_file_gives_the_stage_the_config_its_flags_give(cli, captured, tmp_path, command):
    _, values = CASES[command]
    from_flags = _config_of(cli, captured, command, *_flags(values))
    from_file = _config_of(cli, captured, command, "--config", _toml(tmp_path / "run.toml", values))
    assert from_file == from_flags


def test_flags_on_the_command_line_win(cli, captured, tmp_path):
    config = _toml(tmp_path / "cell.toml", STUDY_CELL)
    trained = _config_of(cli, captured, "train", "--lr", "1e-4", "--config", config, "--dpg-baseline")
    assert (trained.lr, trained.dpg_baseline) == (1e-4, True)
    assert (trained.max_steps, trained.batch_order, trained.beta) == (48, "shuffled", 0.5)  # the rest from the file


def test_report_takes_its_inputs_as_arguments_and_the_rest_from_the_file(cli, captured, tmp_path):
    config = _toml(tmp_path / "report.toml", {"out": "r.html", "title": "study", "bootstrap": 10})
    report = _config_of(cli, captured, "report", "runs/a", "runs/b", "--config", config)
    assert (report.inputs, report.out, report.title, report.bootstrap) == (("runs/a", "runs/b"), "r.html", "study", 10)


BAD_FILES = {
    "unknown key": ("bogus = 1", "unknown key 'bogus'"),
    "a key spelt with underscores": ("max_steps = 3", "unknown key 'max_steps' (keys are the flag names: max-steps)"),
    "the off form of a flag pair": ("no-dpg-baseline = true", "(write dpg-baseline = false)"),
    "a section": ("[train]\nlr = 1e-4", "unknown key 'train'"),
    "a string for a number": ('lr = "fast"', 'lr = "fast": must be a number'),
    "a boolean for an integer": ("seed = true", "seed = true: must be an integer"),
    "a number for a string": ("out = 3", "out = 3: must be a string"),
    "a string for a flag": ('full = "yes"', 'full = "yes": must be true or false'),
    "a number outside its domain": ("lr = inf", "lr = inf: must be in (0, 1]"),
    "a negative count": ("save-every = -1", "save-every = -1: must be at least 0"),
    "not TOML": ("lr = ", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_config_file_is_refused_in_one_line_naming_the_file_and_key(cli, captured, tmp_path, case):
    text, message = BAD_FILES[case]
    config = tmp_path / "run.toml"
    config.write_text(text + "\n")
    flags = ["--samples", "s.parquet", "--scores", "r.parquet", "--loss", "sft", "--out", tmp_path / "run"]
    result = cli("train", *flags, "--config", config)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and message in lines[0], result.stderr
    assert captured == [] and [p.name for p in tmp_path.iterdir()] == ["run.toml"]


def test_a_missing_config_file_is_refused_in_one_line(cli, captured, tmp_path):
    result = cli("estimate-z", "--config", tmp_path / "nope.toml")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"--config {tmp_path / 'nope.toml'}: cannot read it" in result.stderr


def test_every_stage_command_takes_a_config_file():
    group = get_command(app)
    without = [
        name for name, cmd in group.commands.items() if "--config" not in {o for p in cmd.params for o in p.opts}
    ]
    assert without == ["info"]


def test_a_config_file_reproduces_the_provenance_of_a_run(cli, tmp_path):
    ids, idx, rewards = ["a", "a", "a", "b", "b"], [0, 1, 2, 0, 1], [0.0, 1.0, 3.0, 2.0, 0.5]
    values = {
        "samples": write_samples(tmp_path / "samples.parquet", ids, idx),
        "scores": write_scores(tmp_path / "scores.parquet", ids, idx, rewards),
        "method": "iso",
        "gamma": 2,
        "max-pairs-per-prompt": 2,
        "seed": 7,
        "out": str(tmp_path / "pairs.parquet"),
    }

    def provenance(*args):
        result = cli("weight-pairs", *args)
        assert result.exit_code == 0, result.output
        _, _, meta = artifacts.read_metadata(values["out"])
        meta.pop("created_at")
        return meta, pq.read_table(values["out"]).to_pylist()

    from_flags = provenance(*_flags(values))
    (tmp_path / "pairs.parquet").unlink()
    from_file = provenance("--config", _toml(tmp_path / "pairs.toml", values))
    assert from_file == from_flags
    assert from_file[0]["config"]["gamma"] == 2.0 and from_file[0]["config"]["max_pairs_per_prompt"] == 2
