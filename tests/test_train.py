"""`iswt train`: distribution matching on an exact toy, step-0 check, resume, DDP, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, models
from tests.toy import BETA, TOY_REWARD, kl, response_distribution, train_args, write_scores

REPO = Path(__file__).resolve().parents[1]


def test_tb_with_frozen_offline_z_matches_the_tilted_distribution(toy_model_dir, toy_pipeline, cli, tmp_path):
    pi_ref = response_distribution(toy_model_dir)
    pi_star = pi_ref * np.exp(BETA * TOY_REWARD)
    log_z_exact = math.log(pi_star.sum())
    pi_star /= pi_star.sum()

    z = pq.read_table(toy_pipeline / "z.parquet").to_pylist()[0]
    assert z["log_z"] == pytest.approx(log_z_exact, abs=4 * z["log_z_se"] + 0.02)

    results = {}
    for mode, extra in {
        "frozen": ["--z", toy_pipeline / "z.parquet"],
        "learned": ["--z-mode", "learned", "--z-lr", "0.05"],
    }.items():
        run = tmp_path / mode
        args = train_args(
            toy_pipeline,
            toy_model_dir,
            run,
            "--loss",
            "tb",
            "--full",
            "--lr",
            "3e-3",
            "--batch-size",
            "32",
            "--epochs",
            "30",
            *extra,
        )
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        results[mode] = kl(pi_star, response_distribution(str(run)))
        manifest = json.loads((run / "manifest.json").read_text())
        if mode == "frozen":
            assert manifest["z_sha256"] == artifacts.file_sha256(str(toy_pipeline / "z.parquet"))
            assert manifest["inputs"]["z"]["sha256"] == manifest["z_sha256"]
        else:
            learned = pq.read_table(run / "learned_log_z.parquet").to_pylist()[0]["log_z"]
            results["learned_log_z_error"] = abs(learned - log_z_exact)

    start = kl(pi_star, pi_ref)
    print(f"KL(pi*||pi_theta): start {start:.4f}, frozen Z {results['frozen']:.5f}, learned Z {results['learned']:.5f}")
    assert results["frozen"] <= 0.1 * start
    assert results["learned"] <= 0.5 * start


def test_train_log_starts_before_any_update(toy_model_dir, toy_pipeline, cli, tmp_path):
    run = tmp_path / "run"
    args = train_args(
        toy_pipeline,
        toy_model_dir,
        run,
        "--loss",
        "tb",
        "--z",
        toy_pipeline / "z.parquet",
        "--batch-size",
        "16",
        "--max-steps",
        "3",
    )
    assert cli(*args).exit_code == 0
    log = pq.read_table(run / "train_log.parquet").to_pylist()
    assert [r["step"] for r in log] == [0, 1, 2]
    # each step logs its seconds and the response tokens of the micro-batches it drew
    from iswcli import train_data
    from stages.train import TrainConfig, training_batches

    data, _ = train_data.load(str(toy_pipeline / "samples.parquet"), str(toy_pipeline / "scores.parquet"))
    train_data.select_samples(data, "tb", "best")
    config = TrainConfig(out="", samples="", scores="", loss="tb", batch_size=16, max_steps=3)
    drawn = [int(data.n_tokens[data.examples[b]].sum()) for b in training_batches(data, config, per_step=1)[:3]]
    assert [r["response_tokens"] for r in log] == drawn
    assert all(r["tokens_per_s"] * r["seconds"] == pytest.approx(r["response_tokens"]) for r in log)
    finished = (run / "manifest.json").stat().st_mtime_ns
    assert cli(*args).exit_code == 0  # same config, inputs and model: up to date, nothing retrained
    assert (run / "manifest.json").stat().st_mtime_ns == finished
    assert log[0]["log_ratio_mean"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before step 0
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "iswt_config.json"):
        assert (run / name).exists()
    from peft import PeftModel

    PeftModel.from_pretrained(models.load_model(toy_model_dir), str(run))  # loadable by peft directly


def test_step0_check_names_the_likely_cause(toy_model_dir, toy_pipeline, cli, tmp_path):
    bad_scores = tmp_path / "scores.parquet"
    n = pq.read_table(toy_pipeline / "samples.parquet").num_rows
    write_scores(toy_pipeline / "samples.parquet", bad_scores, logprob_ref=[-1.0] * n)
    d = tmp_path
    shutil.copy(toy_pipeline / "samples.parquet", d / "samples.parquet")
    result = cli(*train_args(d, toy_model_dir, d / "run", "--loss", "sft"))
    assert result.exit_code == 2
    assert "step-0 check" in result.stderr and "tokenization mismatch" in result.stderr


def _pairs(toy_pipeline: Path, out: Path, prompt_id="toy", chosen=0, rejected=1) -> None:
    table = pa.table(
        {
            "prompt_id": [prompt_id],
            "chosen_idx": pa.array([chosen], pa.int32()),
            "rejected_idx": pa.array([rejected], pa.int32()),
            "r_chosen": [1.0],
            "r_rejected": [0.0],
            "log_weight_base": [0.0],
            "margin_score": [0.0],
            "weight": [1.0],
            "method": ["direct"],
        }
    )
    artifacts.write_artifact(table, str(out), artifacts.PAIRS, artifacts.make_provenance("weight-pairs", {}))


def test_pair_loss_trains(toy_model_dir, toy_pipeline, cli, tmp_path):
    _pairs(toy_pipeline, tmp_path / "pairs.parquet")
    run = tmp_path / "run"
    args = train_args(
        toy_pipeline,
        toy_model_dir,
        run,
        "--loss",
        "sigmoid",
        "--pairs",
        tmp_path / "pairs.parquet",
        "--max-steps",
        "5",
        "--lr",
        "1e-2",
    )
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    log = pq.read_table(run / "train_log.parquet").to_pylist()
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # h = 0 before any update
    assert log[-1]["loss"] < log[0]["loss"]


def bad_cases(toy_pipeline: Path, tmp: Path) -> dict:
    _pairs(toy_pipeline, tmp / "ghost_pairs.parquet", prompt_id="nope")
    z = pq.read_table(toy_pipeline / "z.parquet")
    artifacts.write_artifact(z.slice(0, 0), str(tmp / "empty_z.parquet"), artifacts.Z, {})
    (tmp / "other_adapter").mkdir()
    return {
        "tb without z": (["--loss", "tb"], "--loss tb needs --z"),
        "sigmoid without pairs": (["--loss", "sigmoid"], "--loss sigmoid needs --pairs"),
        "pairs with missing samples": (
            ["--loss", "sigmoid", "--pairs", tmp / "ghost_pairs.parquet"],
            "pair refers to sample (prompt_id='nope', sample_idx=0) that is not in",
        ),
        "z without the prompt": (["--loss", "tb", "--z", tmp / "empty_z.parquet"], "no log_z for 1 prompt(s)"),
        "not an adapter": (["--loss", "sft", "--adapter", tmp / "other_adapter"], "not a peft adapter directory"),
        "bad beta": (["--loss", "sft", "--beta", "0"], "--beta 0.0: must be a finite number > 0"),
    }


def test_bad_input_fails_in_one_line_without_a_run_directory(toy_model_dir, toy_pipeline, cli, tmp_path):
    for name, (extra, message) in bad_cases(toy_pipeline, tmp_path).items():
        run = tmp_path / "run"
        result = cli(*train_args(toy_pipeline, toy_model_dir, run, *extra))
        assert result.exit_code == 2, (name, result.output)
        assert message in result.stderr, (name, result.stderr)
        assert result.stderr.strip().count("\n") == 0, name
        assert not run.exists(), name


def test_adapter_for_another_base_model_is_refused(toy_model_dir, toy_pipeline, cli, tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    other = get_peft_model(models.load_model(tiny_model_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    other.save_pretrained(tmp_path / "adapter")
    run = tmp_path / "run"
    result = cli(*train_args(toy_pipeline, toy_model_dir, run, "--loss", "sft", "--adapter", tmp_path / "adapter"))
    assert result.exit_code == 2
    assert "--adapter" in result.stderr and "cannot load" in result.stderr
    assert not run.exists()


def _train_subprocess(args: list[str], launcher: list[str] | None = None, env: dict | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = (launcher or [sys.executable]) + ["-m", "iswcli.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_resume_continues_with_the_same_losses(toy_model_dir, toy_pipeline, cli, tmp_path):
    common = [
        "--loss",
        "tb",
        "--z",
        toy_pipeline / "z.parquet",
        "--batch-size",
        "16",
        "--max-steps",
        "8",
        "--lr",
        "1e-2",
        "--lora-dropout",
        "0.1",
        "--save-every",
        "3",
    ]
    whole = tmp_path / "whole"
    assert cli(*train_args(toy_pipeline, toy_model_dir, whole, *common)).exit_code == 0

    # an interrupted run: the same command stopped after its step-6 checkpoint
    cut = tmp_path / "cut"
    assert cli(*train_args(toy_pipeline, toy_model_dir, cut, *common)).exit_code == 0
    for name in ("manifest.json", "train_log.parquet", "adapter_model.safetensors"):
        (cut / name).unlink()
    shutil.rmtree(cut / "checkpoints" / "step-0000006")
    resumed = cli(*train_args(toy_pipeline, toy_model_dir, cut, *common, "--resume"))
    assert resumed.exit_code == 0, resumed.stderr
    expected = pq.read_table(whole / "train_log.parquet").column("loss").to_pylist()
    got = pq.read_table(cut / "train_log.parquet").column("loss").to_pylist()
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_run_cut_off_before_its_first_checkpoint_starts_over(toy_model_dir, toy_pipeline, cli, tmp_path):
    """Re-running the same command after an interruption trains from scratch, never with the stale reference."""
    args = ["--loss", "tb", "--z", toy_pipeline / "z.parquet", "--batch-size", "16", "--max-steps", "2"]
    run = tmp_path / "run"
    (run / "checkpoints" / ".step-0000003.tmp").mkdir(parents=True)  # a checkpoint it never finished
    np.save(run / "ref_logprobs.npy", np.full(256, -50.0))  # another run's reference: step-0 check would fail
    result = cli(*train_args(toy_pipeline, toy_model_dir, run, *args))
    assert result.exit_code == 0, result.output
    assert json.loads((run / "manifest.json").read_text())["steps"] == 2

    with_checkpoint = tmp_path / "with-checkpoint"  # a checkpoint is resumed only when its run's config is known
    (with_checkpoint / "checkpoints" / "step-0000001").mkdir(parents=True)
    (with_checkpoint / "checkpoints" / "step-0000001" / "state.pt").write_bytes(b"")
    foreign = tmp_path / "foreign"  # and nothing else in the directory is ever removed
    (foreign / "checkpoints").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    for out, why in ((with_checkpoint, "config is not recorded"), (foreign, "not an iswt run")):
        refused = cli(*train_args(toy_pipeline, toy_model_dir, out, *args))
        assert refused.exit_code == 2 and why in refused.stderr, refused.stderr
    assert (with_checkpoint / "checkpoints" / "step-0000001" / "state.pt").exists()
    assert (foreign / "notes.txt").read_text() == "mine"


def test_two_processes_follow_one_process_with_double_accumulation(toy_model_dir, toy_pipeline, tmp_path):
    common = [
        "--loss",
        "tb",
        "--z",
        toy_pipeline / "z.parquet",
        "--batch-size",
        "8",
        "--max-steps",
        "4",
        "--lr",
        "1e-2",
        "--device",
        "cpu",
    ]
    single = _train_subprocess(train_args(toy_pipeline, toy_model_dir, tmp_path / "one", *common, "--grad-accum", "2"))
    assert single.returncode == 0, single.stderr
    # accelerate 1.x's --cpu flag starts a single process unless MPI is configured; --multi_gpu goes
    # through torchrun, and iswt's --device cpu makes the processes use gloo on the CPU
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    double = _train_subprocess(train_args(toy_pipeline, toy_model_dir, tmp_path / "two", *common), launcher)
    assert double.returncode == 0, double.stderr[-3000:]
    one = pq.read_table(tmp_path / "one" / "train_log.parquet").column("loss").to_pylist()
    two = pq.read_table(tmp_path / "two" / "train_log.parquet").column("loss").to_pylist()
    # same data per optimizer step, gradients averaged the same way: equal up to float reduction order
    assert two == pytest.approx(one, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    "loss,extra,part",
    [
        ("grpo", ["--clip-eps", "0.2", "--kl-coef", "0.1"], "clip_frac"),
        ("gspo", ["--clip-eps", "0.2"], "clip_frac"),
        ("sft", ["--sft-select", "best"], "log_ratio_mean"),
        ("hinge", [], "margin_mean"),
        ("ipo", [], "pair_acc"),
        ("tb", ["--length-normalize"], "delta_mean"),
    ],
)
def test_every_loss_runs_through_the_one_loop(toy_model_dir, toy_pipeline, cli, tmp_path, loss, extra, part):
    if loss in ("hinge", "ipo"):
        _pairs(toy_pipeline, tmp_path / "pairs.parquet")
        extra = [*extra, "--pairs", tmp_path / "pairs.parquet"]
    if loss == "tb":
        extra = [*extra, "--z", toy_pipeline / "z.parquet"]
    run = tmp_path / "run"
    result = cli(*train_args(toy_pipeline, toy_model_dir, run, "--loss", loss, "--max-steps", "3", *extra))
    assert result.exit_code == 0, result.stderr
    log = pq.read_table(run / "train_log.parquet").to_pylist()
    assert len(log) == 3 and all(math.isfinite(r["loss"]) for r in log)
    assert part in log[0]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["inputs"]["samples"]["sha256"]
    if loss == "tb":
        assert "approximate" in manifest["objective"]
    if loss == "grpo":
        # q is the policy at step 0 (temperature 1, no truncation): every ratio is 1, nothing clipped
        assert log[0]["clip_frac"] == 0.0
        assert log[0]["kl"] == pytest.approx(0.0, abs=1e-6)


def test_batches_by_prompt_keep_a_prompts_examples_together_and_follow_the_seed():
    from iswcli.train_data import epoch_batches

    prompt_of = np.repeat([3, 1, 2, 0], 4)[np.random.default_rng(1).permutation(16)]  # 4 prompts x 4 samples
    batches = epoch_batches(16, 4, epoch=0, seed=7, prompt_of=prompt_of)
    assert sorted(np.concatenate(batches).tolist()) == list(range(16))
    assert all(len(set(prompt_of[b].tolist())) == 1 for b in batches)  # batch = K: one prompt each
    again = epoch_batches(16, 4, epoch=0, seed=7, prompt_of=prompt_of)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    next_epoch = epoch_batches(16, 4, epoch=1, seed=7, prompt_of=prompt_of)
    assert [prompt_of[b[0]] for b in next_epoch] != [prompt_of[b[0]] for b in batches]  # prompts reshuffled
    # batch 3 over prompts of 4: each prompt spans at most two consecutive batches, never interleaved
    order = np.concatenate(epoch_batches(16, 3, epoch=0, seed=7, prompt_of=prompt_of))
    runs = np.flatnonzero(np.diff(prompt_of[order])).size + 1
    assert runs == 4


def test_batches_by_prompt_go_by_length_up_and_down_and_pad_less():
    from iswcli.train_data import epoch_batches

    rng = np.random.default_rng(3)
    prompt_of = np.repeat(np.arange(6), 10)[rng.permutation(60)]  # 6 prompts x 10 samples
    length_of = rng.integers(1, 65, size=60)
    batches = epoch_batches(60, 4, epoch=0, seed=5, prompt_of=prompt_of, length_of=length_of)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(60))
    # the prompts come in the same seeded order as without lengths; each prompt's run is sorted by length,
    # ascending and descending in turn
    plain = np.concatenate(epoch_batches(60, 4, epoch=0, seed=5, prompt_of=prompt_of))
    assert np.array_equal(prompt_of[order], prompt_of[plain])
    runs = np.split(order, np.flatnonzero(np.diff(prompt_of[order])) + 1)
    assert len(runs) == 6
    for i, run in enumerate(runs):
        step = np.diff(length_of[run])
        assert (step >= 0).all() if i % 2 == 0 else (step <= 0).all()

    def padded(bs):  # response tokens a micro-batch runs, padding included
        return sum(len(b) * int(length_of[b].max()) for b in bs)

    assert padded(batches) < padded(epoch_batches(60, 4, epoch=0, seed=5, prompt_of=prompt_of))


def test_rewards_equal_within_every_prompt_are_named_as_no_signal(toy_model_dir, toy_pipeline, cli, tmp_path):
    flat = tmp_path / "scores-flat.parquet"
    write_scores(toy_pipeline / "samples.parquet", flat, reward_of=lambda ids: 1.0)
    base = ["train", "--model", toy_model_dir, "--samples", toy_pipeline / "samples.parquet", "--max-steps", "1"]
    result = cli(*base, "--scores", flat, "--loss", "grpo", "--out", tmp_path / "flat")
    assert result.exit_code == 0, result.stderr
    assert "every prompt's samples have the same reward" in result.stderr
    varied = cli(*base, "--scores", toy_pipeline / "scores.parquet", "--loss", "grpo", "--out", tmp_path / "varied")
    assert varied.exit_code == 0, varied.stderr
    assert "same reward" not in varied.stderr


def test_prompts_with_equal_rewards_counts_each_prompt_once():
    from iswcli.train_data import TrainData, prompts_with_equal_rewards

    index = np.array([0, 0, 1, 1, 1, 2])
    data = TrainData(
        prompt_ids=["a", "a", "b", "b", "b", "c"],
        sample_idx=np.array([0, 1, 0, 1, 2, 0]),
        prompt_tokens=[[1]] * 6,
        response_tokens=[[2]] * 6,
        token_logq=[[0.0]] * 6,
        reward=np.array([0.5, 0.5, 0.0, 1.0, 0.0, 3.0]),
        logprob_ref=None,
        prompt_index=index,
        prompt_names=["a", "b", "c"],
    )
    assert prompts_with_equal_rewards(data) == 2  # a (0.5, 0.5) and c (one sample); b varies


def test_max_steps_that_leave_prompts_unseen_are_named(toy_model_dir, cli, tmp_path):
    """By-prompt batches hold one prompt's examples: a --max-steps budget can end before some prompts had any."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": p, "prompt": "q"}) + "\n" for p in ("a", "b")))
    samples, scores = tmp_path / "samples.parquet", tmp_path / "scores.parquet"
    sample = ["sample", "--model", toy_model_dir, "--prompts", prompts, "--n", "4", "--max-new-tokens", "1"]
    assert cli(*sample, "--no-chat-template", "--out", samples).exit_code == 0
    write_scores(samples, scores)
    base = ["train", "--model", toy_model_dir, "--samples", samples, "--scores", scores, "--loss", "grpo"]
    base += ["--batch-size", "2"]
    one_prompt = cli(*base, "--max-steps", "1", "--out", tmp_path / "by-prompt")
    assert one_prompt.exit_code == 0, one_prompt.stderr
    assert "--max-steps 1: training sees examples of 1 of its 2 prompts" in one_prompt.stderr
    assert "--batch-order shuffled spreads the steps" in one_prompt.stderr
    every = cli(*base, "--max-steps", "4", "--batch-order", "shuffled", "--out", tmp_path / "shuffled")
    assert every.exit_code == 0, every.stderr
    assert "training sees" not in every.stderr
