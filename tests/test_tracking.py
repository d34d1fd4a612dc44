"""`iswt train --report-to`: the tracker gets exactly the rows of train_log.parquet, offline."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.test_train import _train_subprocess
from tests.toy import train_args

ARGS = ["--loss", "sft", "--max-steps", "3", "--lr", "1e-2"]


def test_tensorboard_gets_every_logged_step(toy_model_dir, toy_pipeline, cli, tmp_path):  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = cli(*train_args(toy_pipeline, toy_model_dir, run, *ARGS, "--report-to", "tensorboard"))
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = pq.read_table(run / "train_log.parquet").to_pylist()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == [r["step"] for r in logged]
    assert [s.value for s in scalars] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert "train/grad_norm" in events.Tags()["scalars"]


def test_trackio_logs_locally(toy_model_dir, toy_pipeline, tmp_path):  # noqa: F811
    env = {"TRACKIO_DIR": str(tmp_path / "trackio")}
    run = tmp_path / "run"
    result = _train_subprocess(train_args(toy_pipeline, toy_model_dir, run, *ARGS, "--report-to", "trackio"), env=env)
    assert result.returncode == 0, result.stderr
    read = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
        "print(json.dumps([r['loss'] for r in S.get_logs('iswt', 'run')]))"
    )
    shown = subprocess.run([sys.executable, "-c", read], env={**os.environ, **env}, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    logged = pq.read_table(run / "train_log.parquet").column("loss").to_pylist()
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == pytest.approx(logged, rel=1e-6)


def test_unknown_or_missing_tracker_is_refused(toy_model_dir, toy_pipeline, cli, tmp_path):  # noqa: F811
    result = cli(*train_args(toy_pipeline, toy_model_dir, tmp_path / "run", *ARGS, "--report-to", "mlflow"))
    assert result.exit_code == 2 and "--report-to mlflow: must be one of" in result.stderr
    if importlib.util.find_spec("wandb") is None:
        result = cli(*train_args(toy_pipeline, toy_model_dir, tmp_path / "run", *ARGS, "--report-to", "wandb"))
        assert result.exit_code == 2 and "'wandb' package is not installed" in result.stderr
    assert not (tmp_path / "run").exists()
