"""examples/sample_efficiency_table.py on hand-made runs: the study's numbers are per-prompt differences
averaged over seeds, paired with RSO on the same prompt and seed, and online rounds paired with the offline
run of the same seed; each checked against values computed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts
from iswcli.target_curves import PER_PROMPT_FILE
from iswcli.target_eval import target_spec

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ("p0", "p1", "p2")
BASE = {"p0": 0.5, "p1": 1.0, "p2": 0.3}  # every run's step-0 kl_set, as the base model is the same


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location(
        "sample_efficiency_table", REPO / "examples/sample_efficiency_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(run: Path, final: dict[str, float], lr: float = 1e-5, loss: tuple[float, ...] = (1.0, 0.5)) -> Path:
    """A finished run: manifest, per-prompt curves at step 0 and 48 (both groups alike), a train log."""
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"config": {"lr": lr}}))
    rows = [
        {
            "step": step,
            "group": group,
            "prompt_id": p,
            "kl_set": value[p],
            "tv_set": 0.0,
            "p_valid": 0.5,
            "eff_answers": 2.0,
        }
        for step, value in ((0, BASE), (48, final))
        for group in ("train", "heldout")
        for p in PROMPTS
    ]
    pq.write_table(pa.Table.from_pylist(rows), run / PER_PROMPT_FILE)
    log = [{"step": step, "loss": value} for step, value in enumerate(loss)]  # step 0: before any update
    pq.write_table(pa.Table.from_pylist(log), run / "train_log.parquet")
    return run


def test_changes_are_per_prompt_means_over_seeds_and_paired_with_rso(table, tmp_path):
    make_run(tmp_path / "n8-s0/disa", {"p0": 0.2, "p1": 0.6, "p2": 0.3})
    make_run(tmp_path / "n8-s1/disa", {"p0": 0.4, "p1": 0.8, "p2": 0.1})
    make_run(tmp_path / "n8-s0/rso", {"p0": 0.5, "p1": 0.5, "p2": 0.5})  # seed 1 of rso has not finished
    runs = table.grid(tmp_path)
    assert set(runs) == {("disa", 8), ("rso", 8)}

    change = table.per_prompt_change(runs["disa", 8], "train", "kl_set")
    assert change == pytest.approx({"p0": -0.2, "p1": -0.3, "p2": -0.1})  # (0.2 + 0.4) / 2 - 0.5, ...
    row = next(line for line in table.change_table(tmp_path, "heldout") if line.startswith("| disa |"))
    assert row.startswith("| disa | -0.200 [") and row.endswith("(2) |")

    # paired on seed 0 only (the seed both finished): disa - rso per prompt = -0.3, +0.1, -0.2
    row = next(line for line in table.versus_rso_table(tmp_path, "train") if line.startswith("| disa - rso |"))
    assert row.startswith("| disa - rso | -0.133 [") and row.endswith("(1) |")


def test_the_sweep_chooses_the_lowest_training_kl_and_marks_the_rate_the_grid_used(table, tmp_path):
    make_run(tmp_path / "n32-s0/iso-lr1e-5", {"p0": 0.4, "p1": 0.9, "p2": 0.3}, lr=1e-5)
    make_run(tmp_path / "n32-s0/iso-lr3e-5", {"p0": 0.2, "p1": 0.9, "p2": 0.3}, lr=3e-5)
    blown_up = (1.0, 2.0, 3.0, 300.0, 400.0)  # the last five steps average 141x step 0
    make_run(tmp_path / "n32-s0/iso-lr1e-4", {"p0": 2.0, "p1": 3.0, "p2": 1.0}, lr=1e-4, loss=blown_up)
    assert table.chosen_lr(tmp_path, "iso") == "3e-5"
    make_run(tmp_path / "n32-s0/iso", {"p0": 0.2, "p1": 0.9, "p2": 0.3}, lr=3e-5)
    assert table.grid_lr(tmp_path, "n32-s0", "iso") == 3e-5
    lines = table.sweep_table(tmp_path, tmp_path)
    assert [line.split(" | ")[1] for line in lines if line.startswith("| iso |")] == ["1e-5", "3e-5 (chosen)", "1e-4"]
    assert lines[-1].endswith("| 1.000 -> 400.000 | 4 |")  # train's divergence rule, at the step it fired


def write_target(path: Path, kl: dict[str, float]) -> None:
    spec = target_spec()
    rows = [{name: None for name in spec.schema.names} | {"prompt_id": p, "kl_set": v} for p, v in kl.items()]
    artifacts.write_artifact(pa.Table.from_pylist(rows, schema=spec.schema), str(path), spec, {"stage": "evaluate"})


def test_online_rounds_are_paired_with_the_offline_run_of_their_seed(table, tmp_path):
    make_run(tmp_path / "n32-s0/iso", {"p0": 0.3, "p1": 0.6, "p2": 0.3})
    make_run(tmp_path / "n32-s0/rso", {"p0": 0.2, "p1": 0.7, "p2": 0.2})
    for method, kl in (("iso", {"p0": 0.1, "p1": 0.8, "p2": 0.3}), ("rso", {"p0": 0.4, "p1": 0.4, "p2": 0.1})):
        for split in ("train", "test"):
            write_target(tmp_path / f"online-s0/{method}/eval-{split}.target.parquet", kl)
    lines = table.online_table(tmp_path)
    iso = next(line for line in lines if line.startswith("| iso |")).split(" | ")
    # change from base: -0.4, -0.2, 0 -> -0.2; online - offline: -0.2, +0.2, 0 -> 0
    assert iso[1].startswith("-0.200 [") and iso[2].startswith("+0.000 [")
    both = next(line for line in lines if line.startswith("| iso - rso, both online |")).split(" | ")
    assert both[1].startswith("+0.100 [")  # -0.3, +0.4, +0.2 per prompt


def test_longer_runs_print_each_methods_mean_kl_at_every_measured_step(table, tmp_path):
    nan = float("nan")
    for method, seed, kl in (("sft", 0, (0.6, 0.2, 0.9)), ("dpg", 0, (0.6, 0.3, 0.2)), ("dpg", 1, (0.4, 0.1, 0.2))):
        run = make_run(tmp_path / f"long-s{seed}/{method}", {p: 0.0 for p in PROMPTS}, lr=1e-4)
        # train's log: the group's mean at steps 0, 16 and 32, nothing between (training steps only)
        log = [{"step": s, "loss": 1.0, "train_kl_set": v} for s, v in zip((0, 16, 32), kl)]
        log.insert(1, {"step": 1, "loss": 1.0, "train_kl_set": nan})
        pq.write_table(pa.Table.from_pylist(log), run / "train_log.parquet")
    lines = table.long_table(tmp_path, "train")
    assert lines[2] == "| step | dpg (lr 0.0001, 2) | sft (lr 0.0001, 1) |"
    assert lines[4:] == ["| 0 | 0.500 | 0.600 |", "| 16 | 0.200 | 0.200 |", "| 32 | 0.200 | 0.900 |"]
    assert table.long_table(tmp_path / "none", "train") == ["No longer runs in this study."]
