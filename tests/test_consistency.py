"""Artifacts that do not belong together are refused in one line, with nothing on disk changed.

Every case here was a silently wrong result or a lost file once. Each runs
the real CLI on the word-level toy model of test_train and checks the exit
code, the one-line message and that every file in the directory is byte for
byte what it was (or, where the right answer is to go on, that it does).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iswcli import outputs

REWARD = "python:tests/pipeline_reward.py:letter_reward"


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (lock and temp files included) with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.count("\n") == 0, message
    assert "internal error" not in message, message
    for needle in needles:
        assert needle in message, message


@pytest.fixture(scope="module")
def chain_dir(toy_model_dir, tmp_path_factory) -> Path:  # noqa: F811
    """Two samples files of the same prompts and keys, each scored, each with z and pairs; a finished run."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    d = tmp_path_factory.mktemp("chain")
    run = CliRunner().invoke

    def ok(*args) -> None:
        result = run(app, ["--quiet", *map(str, args)])
        assert result.exit_code == 0, result.output

    (d / "prompts.jsonl").write_text("".join(json.dumps({"prompt_id": p, "prompt": p}) + "\n" for p in ("q", "a")))
    for name, seed in (("", 0), ("other_", 1)):
        ok(
            "sample",
            "--model",
            toy_model_dir,
            "--prompts",
            d / "prompts.jsonl",
            "--n",
            "8",
            "--max-new-tokens",
            "1",
            "--no-chat-template",
            "--seed",
            seed,
            "--out",
            d / f"{name}samples.parquet",
        )
        ok("score", "--samples", d / f"{name}samples.parquet", "--reward", REWARD, "--out", d / f"{name}scores.parquet")
        ok(
            "estimate-z",
            "--proposal",
            d / f"{name}samples.parquet",
            "--scores",
            d / f"{name}scores.parquet",
            "--beta",
            "5",
            "--out",
            d / f"{name}z.parquet",
        )
        ok(
            "weight-pairs",
            "--samples",
            d / f"{name}samples.parquet",
            "--scores",
            d / f"{name}scores.parquet",
            "--method",
            "direct",
            "--out",
            d / f"{name}pairs.parquet",
        )
    ok(*train(d, toy_model_dir, d / "run", "--loss", "tb", "--z", d / "z.parquet"))
    return d


def train(d: Path, model: str, out: Path, *extra) -> list:
    return [
        "train",
        "--model",
        model,
        "--samples",
        d / "samples.parquet",
        "--scores",
        d / "scores.parquet",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--out",
        out,
        *extra,
    ]


@pytest.fixture
def work(chain_dir, tmp_path) -> Path:
    """A private copy of the chain, so a test may break things."""
    shutil.copytree(chain_dir, tmp_path / "w", symlinks=True)
    return tmp_path / "w"


# --------------------------------------------------------------------------- outputs never overwrite inputs


def test_out_equal_to_an_input_is_refused(work, cli, toy_model_dir):  # noqa: F811
    w = work
    cases = [
        (
            ["score", "--samples", w / "samples.parquet", "--reward", REWARD, "--out", w / "samples.parquet"],
            "--samples",
        ),
        (
            [
                "estimate-z",
                "--proposal",
                w / "samples.parquet",
                "--scores",
                w / "scores.parquet",
                "--beta",
                "1",
                "--out",
                w / "scores.parquet",
            ],
            "--scores",
        ),
        (
            [
                "estimate-z",
                "--proposal",
                w / "samples.parquet",
                "--scores",
                w / "scores.parquet",
                "--beta",
                "1",
                "--out",
                w / "samples.parquet",
            ],
            "--proposal",
        ),
        (
            [
                "weight-pairs",
                "--samples",
                w / "samples.parquet",
                "--scores",
                w / "scores.parquet",
                "--method",
                "direct",
                "--out",
                w / "samples.parquet",
            ],
            "--samples",
        ),
        (
            [
                "evaluate",
                "--model",
                toy_model_dir,
                "--prompts",
                w / "prompts.jsonl",
                "--reward",
                REWARD,
                "--baseline",
                w / "base.parquet",
                "--judge",
                f"rm:{toy_model_dir}",
                "--out",
                w / "base.parquet",
            ],
            "--baseline",
        ),
    ]
    shutil.copy(w / "scores.parquet", w / "base.parquet")
    os.symlink(w / "samples.parquet", w / "link.parquet")  # a symlink to an input is that input
    cases.append(
        (["score", "--samples", w / "samples.parquet", "--reward", REWARD, "--out", w / "link.parquet"], "--samples")
    )
    prompts = w / "prompts.parquet"
    pq.write_table(pq.read_table(w / "samples.parquet").select(["prompt_id", "prompt"]).slice(0, 1), prompts)
    cases.append((["sample", "--model", toy_model_dir, "--prompts", prompts, "--out", prompts], "--prompts"))
    for args, flag in cases:
        before = snapshot(w)
        refused(cli(*args), "--out", f"is the input {flag}", "never writes over its own input")
        assert snapshot(w) == before, args


def test_out_inside_an_input_shard_directory_is_refused(work, cli):
    (work / "shards").mkdir()
    shutil.copy(work / "samples.parquet", work / "shards" / "part-0.parquet")
    before = snapshot(work)
    result = cli("score", "--samples", work / "shards", "--reward", REWARD, "--out", work / "shards" / "s.parquet")
    refused(result, "lies inside --samples", "one of its shards")
    assert snapshot(work) == before


# --------------------------------------------------------------------------- the chain of provenance


def test_scores_of_other_samples_are_refused_by_every_reader(work, cli, toy_model_dir):  # noqa: F811
    w = work
    readers = [
        [
            "estimate-z",
            "--proposal",
            w / "samples.parquet",
            "--scores",
            w / "other_scores.parquet",
            "--beta",
            "1",
            "--out",
            w / "z2.parquet",
        ],
        [
            "weight-pairs",
            "--samples",
            w / "samples.parquet",
            "--scores",
            w / "other_scores.parquet",
            "--method",
            "direct",
            "--out",
            w / "p2.parquet",
        ],
        [
            "train",
            "--model",
            toy_model_dir,
            "--samples",
            w / "samples.parquet",
            "--scores",
            w / "other_scores.parquet",
            "--loss",
            "sft",
            "--out",
            w / "run2",
        ],
    ]
    for args in readers:
        before = snapshot(w)
        refused(cli(*args), "other_scores.parquet: was made from samples", "not from", "samples.parquet")
        assert snapshot(w) == before, args[0]


def test_z_and_pairs_of_other_samples_are_refused_by_train(work, cli, toy_model_dir):  # noqa: F811
    for extra, role in (
        (["--loss", "tb", "--z", work / "other_z.parquet"], "other_z.parquet: was made from proposal"),
        (["--loss", "sigmoid", "--pairs", work / "other_pairs.parquet"], "other_pairs.parquet: was made from samples"),
    ):
        before = snapshot(work)
        refused(cli(*train(work, toy_model_dir, work / "run2", *extra)), role)
        assert snapshot(work) == before


def test_train_takes_beta_and_reward_transform_from_the_z(work, cli, toy_model_dir):  # noqa: F811
    before = snapshot(work)
    result = cli(*train(work, toy_model_dir, work / "run2", "--loss", "tb", "--z", work / "z.parquet", "--beta", "2"))
    refused(result, "--beta 2.0", "estimated at beta 5", "omit --beta")
    assert snapshot(work) == before

    manifest = json.loads((work / "run" / "manifest.json").read_text())  # trained without --beta
    assert manifest["config"]["beta"] == 5.0
    assert manifest["reward_transform"]["name"] == "none"

    zscored = [
        "estimate-z",
        "--proposal",
        work / "samples.parquet",
        "--scores",
        work / "scores.parquet",
        "--beta",
        "5",
        "--reward-transform",
        "group-zscore",
        "--out",
        work / "zz.parquet",
    ]
    assert cli(*zscored).exit_code == 0
    result = cli(*train(work, toy_model_dir, work / "run-zz", "--loss", "tb", "--z", work / "zz.parquet"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((work / "run-zz" / "manifest.json").read_text())
    assert manifest["reward_transform"]["name"] == "group-zscore"


# --------------------------------------------------------------------------- run directories and adapters


def _cut_after_checkpoint(run: Path) -> None:
    """What a kill after the step-1 checkpoint and before the final save leaves."""
    for name in ("manifest.json", "train_log.parquet", "adapter_model.safetensors", "iswt_config.json"):
        (run / name).unlink()


def test_an_interrupted_run_resumes_with_its_own_command_and_refuses_another(work, cli, toy_model_dir):  # noqa: F811
    args = [
        str(a)
        for a in train(
            work,
            toy_model_dir,
            work / "cut",
            "--loss",
            "tb",
            "--z",
            work / "z.parquet",
            "--save-every",
            "1",
            "--max-steps",
            "3",
        )
    ]
    assert cli("--quiet", *args).exit_code == 0
    _cut_after_checkpoint(work / "cut")
    shutil.rmtree(work / "cut" / "checkpoints" / "step-0000002")

    before = snapshot(work)
    for changed, keys in ((["--lr", "0.5"], "lr"), (["--loss", "sft"], "loss")):
        for resume in ([], ["--resume"]):
            result = cli("--quiet", *args, *changed, *resume)
            assert result.exit_code == 2, result.stderr
            assert "holds an unfinished run with a different" in result.stderr and keys in result.stderr
            assert result.stderr.strip().count("\n") == 0
    assert snapshot(work) == before

    resumed = cli(*args)  # the same command, no --resume: it continues
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "step-0000001" in resumed.stderr
    assert json.loads((work / "cut" / "manifest.json").read_text())["steps"] == 3

    restarted = cli("--quiet", *args, "--lr", "0.5", "--force")
    assert restarted.exit_code == 0, restarted.stderr
    assert json.loads((work / "cut" / "manifest.json").read_text())["config"]["lr"] == 0.5


def test_a_run_without_manifest_is_not_an_adapter(work, cli, toy_model_dir):  # noqa: F811
    (work / "run" / "manifest.json").unlink()  # killed during its final save
    before = snapshot(work)
    result = cli(
        "sample",
        "--model",
        toy_model_dir,
        "--adapter",
        work / "run",
        "--prompts",
        work / "prompts.jsonl",
        "--no-chat-template",
        "--out",
        work / "s2.parquet",
    )
    refused(result, "--adapter", "did not finish (no manifest.json)")
    result = cli(
        "evaluate",
        "--model",
        toy_model_dir,
        "--adapter",
        work / "run",
        "--prompts",
        work / "prompts.jsonl",
        "--reward",
        REWARD,
        "--out",
        work / "e.parquet",
    )
    refused(result, "--adapter", "did not finish")
    assert snapshot(work) == before


def test_an_adapter_trained_on_another_base_model_is_refused(work, cli, toy_model_dir, tmp_path):  # noqa: F811
    import torch

    from iswcli import models

    other = tmp_path / "other-model"  # same architecture and tokenizer, other weights: peft would load it
    model = models.load_model(toy_model_dir)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(toy_model_dir) / name).exists():
            shutil.copy(Path(toy_model_dir) / name, other / name)
    before = snapshot(work)
    for args in (
        [
            "sample",
            "--model",
            other,
            "--adapter",
            work / "run",
            "--prompts",
            work / "prompts.jsonl",
            "--no-chat-template",
            "--out",
            work / "s2.parquet",
        ],
        [
            "evaluate",
            "--model",
            other,
            "--adapter",
            work / "run",
            "--prompts",
            work / "prompts.jsonl",
            "--reward",
            REWARD,
            "--out",
            work / "e.parquet",
        ],
        [*train(work, str(other), work / "run2", "--loss", "sft", "--adapter", work / "run")],
    ):
        refused(cli(*args), "--adapter", "was trained on a base model with weights sha256", "not on --model")
        assert snapshot(work) == before, args[0]


# --------------------------------------------------------------------------- bad flags are refused, not crashed on


def test_bad_flags_exit_2_before_anything_is_written(work, cli, toy_model_dir):  # noqa: F811
    w = work
    cases = [
        (
            [
                "sample",
                "--model",
                toy_model_dir,
                "--prompts",
                w / "prompts.jsonl",
                "--device",
                "tpu",
                "--out",
                w / "s2.parquet",
            ],
            "--device tpu",
        ),
        (train(w, toy_model_dir, w / "run2", "--loss", "sft", "--device", "tpu"), "--device tpu"),
        (train(w, toy_model_dir, w / "run2", "--loss", "sft", "--lora-r", "0"), "--lora-r 0"),
        (
            train(w, toy_model_dir, w / "run2", "--loss", "sft", "--target-modules", "foo,bar"),
            "--target-modules foo,bar: foo, bar is not a linear layer",
        ),
        (
            [
                "estimate-z",
                "--proposal",
                w / "samples.parquet",
                "--scores",
                w / "scores.parquet",
                "--beta",
                "1",
                "--plot",
                "/proc/x.png",
                "--out",
                w / "z2.parquet",
            ],
            "--plot /proc/x.png",
        ),
    ]
    for args, needle in cases:
        before = snapshot(w)
        refused(cli(*args), needle)
        assert snapshot(w) == before, args[0]


def test_a_prompt_longer_than_the_context_is_refused(work, cli, toy_model_dir):  # noqa: F811
    long = work / "long.jsonl"
    long.write_text(json.dumps({"prompt_id": "huge", "prompt": "q " * 100_000}) + "\n")
    before = snapshot(work)
    result = cli(
        "sample",
        "--model",
        toy_model_dir,
        "--prompts",
        long,
        "--no-chat-template",
        "--max-new-tokens",
        "4",
        "--out",
        work / "s2.parquet",
    )
    refused(result, "prompt 'huge'", "100000 prompt tokens", "context of 64 positions")
    assert snapshot(work) == before


def test_info_refuses_shards_of_different_configs(work, cli):
    (work / "mixed").mkdir()
    shutil.copy(work / "scores.parquet", work / "mixed" / "a.parquet")
    shutil.copy(work / "other_scores.parquet", work / "mixed" / "b.parquet")
    refused(cli("info", work / "mixed"), "b.parquet: shard from a different config")


# --------------------------------------------------------------------------- one run per output, no stale files


def test_a_held_output_is_refused_and_stale_temp_files_go(work, cli):
    args = [
        "estimate-z",
        "--proposal",
        work / "samples.parquet",
        "--scores",
        work / "scores.parquet",
        "--beta",
        "2",
        "--out",
        work / "z2.parquet",
    ]
    with outputs.claim(str(work / "z2.parquet"), {}):  # another run holds it
        before = snapshot(work)
        refused(cli(*args), "--out", "another iswt run is writing it now")
        assert snapshot(work) == before
    assert not outputs.lock_path(str(work / "z2.parquet")).exists()

    stale = work / ".z2.parquet.tmp-999999"  # a killed final write
    stale.write_bytes(b"half a file")
    assert cli(*args).exit_code == 0
    assert not stale.exists()
    assert sorted(p.name for p in work.glob(".z2*")) == []
