"""Pairs out to TRL and back: TRL's own DPO sigmoid loss on the exported pairs equals iswt's at uniform weights.

A TRL preference dataset is imported (`iswt import-pairs`), scored under a
reference by iswt's teacher forcing (`iswt score --ref-model`), exported
(`iswt export-pairs`) and read back by `datasets.load_dataset`; TRL's
DPOTrainer then computes its loss on it with its own tokenization and its own
reference pass, and iswt's losses.py computes the sigmoid loss from iswt's
log-probs of the same pairs under the same two models.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from iswcli import losses

REWARD = "python:tests/pipeline_reward.py:length_reward"
BETA = 0.5
# float32 sums over a few tokens of a 49k vocabulary, by two code paths (TRL's padded batch, iswt's shared prompt)
LOGP_TOLERANCE = 1e-3
TRL_ROWS = [  # standard format; responses start with a space, as they follow the prompt's text
    {"prompt": "Name a colour.", "chosen": " red", "rejected": " green", "weight": 2.0},
    {"prompt": "Name a colour.", "chosen": " blue", "rejected": " green", "weight": 1.0},
    {"prompt": "Name a day of the week.", "chosen": " Monday", "rejected": " Friday", "weight": 1.0},
]


# TRL's side, in a subprocess: its DPOTrainer on the exported dataset, one batch of every pair, no update.
TRL_LOSS = """
import json, torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
ds = load_dataset("parquet", data_files="{data}", split="train", cache_dir="{out}/datasets")
args = DPOConfig(output_dir="{out}", beta={beta}, loss_type=["sigmoid"], per_device_train_batch_size=ds.num_rows,
                 report_to="none", use_cpu=True, precompute_ref_log_probs=False)
trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained("{policy}").eval(),
                     ref_model=AutoModelForCausalLM.from_pretrained("{ref}").eval(), args=args, train_dataset=ds,
                     processing_class=AutoTokenizer.from_pretrained("{ref}"))
batch = next(iter(trainer.get_train_dataloader()))
with torch.no_grad():
    loss = float(trainer.compute_loss(trainer.model, batch))
    trl_ref = torch.stack(trainer.compute_ref_log_probs(trainer.ref_model, batch), dim=1)
exported_ref = torch.stack([batch["ref_chosen_logps"], batch["ref_rejected_logps"]], dim=1)
print(json.dumps({{"loss": loss, "trl_ref": trl_ref.tolist(), "exported_ref": exported_ref.tolist()}}))
"""


@pytest.fixture(scope="module")
def policy_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with its weights moved: a policy that is not the reference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("policy")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, policy_dir, tmp_path_factory):
    from typer.testing import CliRunner

    from iswcli.cli import app

    d = tmp_path_factory.mktemp("trl")
    (d / "trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRL_ROWS))
    runner = CliRunner()

    def iswt(*args):
        result = runner.invoke(app, ["--quiet", *map(str, args)])
        assert result.exit_code == 0, result.output

    iswt("import-pairs", "--data", d / "trl.jsonl", "--out-dir", d / "in", "--model", tiny_model_dir)
    samples = d / "in" / "samples.parquet"
    for name, model in (("ref", tiny_model_dir), ("policy", policy_dir)):  # iswt's log-probs under each model
        iswt("score", "--samples", samples, "--reward", REWARD, "--ref-model", model, "--out", d / f"{name}.parquet")
    iswt("export-pairs", "--pairs", d / "in" / "pairs.parquet", "--samples", samples, "--scores", d / "ref.parquet",
         "--out", d / "out.parquet")  # fmt: skip
    iswt("export-pairs", "--pairs", d / "in" / "pairs.parquet", "--samples", samples, "--scores", d / "ref.parquet",
         "--out", d / "out.jsonl")  # fmt: skip
    return d


def test_import_makes_artifacts_train_reads(exported):
    pairs = pq.read_table(exported / "in" / "pairs.parquet").to_pylist()
    assert len(pairs) == 3
    by_prompt = {}
    for p in pairs:
        by_prompt.setdefault(p["prompt_id"], []).append(p["weight"])
    assert sorted(sorted(w) for w in by_prompt.values()) == [[pytest.approx(1 / 3), pytest.approx(2 / 3)], [1.0]]
    samples = pq.read_table(exported / "in" / "samples.parquet")
    assert samples.num_rows == 5  # red, green, blue; Monday, Friday: green once though in two pairs


def test_export_is_trl_preference_data_that_datasets_loads(exported, tmp_path):
    from datasets import load_dataset

    for name, kind in (("out.parquet", "parquet"), ("out.jsonl", "json")):
        ds = load_dataset(kind, data_files=str(exported / name), split="train", cache_dir=str(tmp_path / kind))
        assert ds.num_rows == 3
        assert {"prompt", "chosen", "rejected", "weight", "ref_chosen_logps", "ref_rejected_logps"} <= set(
            ds.column_names
        )
        rows = sorted(ds.to_list(), key=lambda r: (r["prompt"], r["chosen"]))
        expected = sorted(TRL_ROWS, key=lambda r: (r["prompt"], r["chosen"]))
        assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
            (r["prompt"], r["chosen"], r["rejected"]) for r in expected
        ]
        assert sum(r["weight"] for r in rows) == pytest.approx(2.0)  # 1 per prompt


def test_trl_dpo_sigmoid_loss_equals_iswt_at_uniform_weights(exported, tiny_model_dir, policy_dir, tmp_path):
    # TRL's trainer sets accelerate's process-wide state (CPU): run it in a process of its own
    script = TRL_LOSS.format(
        data=exported / "out.parquet", ref=tiny_model_dir, policy=policy_dir, out=tmp_path, beta=BETA
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trl = json.loads(done.stdout.strip().splitlines()[-1])
    trl_loss = trl["loss"]
    # the exported reference log-probs are what TRL's own reference pass computes on the exported text
    np.testing.assert_allclose(trl["trl_ref"], trl["exported_ref"], rtol=0, atol=LOGP_TOLERANCE)

    def logprob(name):  # iswt's teacher-forced sequence log-probs, by (prompt_id, sample_idx)
        t = pq.read_table(exported / f"{name}.parquet").to_pylist()
        return {(r["prompt_id"], r["sample_idx"]): r["logprob_ref"] for r in t}

    ref, pol = logprob("ref"), logprob("policy")
    pairs = pq.read_table(exported / "out.parquet").to_pylist()
    side = lambda logps, key: torch.tensor([logps[(p["prompt_id"], p[key])] for p in pairs], dtype=torch.float64)
    h = losses.pair_margin(
        side(pol, "chosen_idx"), side(ref, "chosen_idx"), side(pol, "rejected_idx"), side(ref, "rejected_idx"), BETA
    )
    per_pair = losses.pair_loss("sigmoid", h, BETA)
    iswt_loss = float(losses.weighted_pair_loss(per_pair, torch.ones_like(per_pair)))
    assert abs(iswt_loss - np.log(2)) > 1e-3  # the policy is not the reference: the loss is not its step-0 value
    assert trl_loss == pytest.approx(iswt_loss, abs=BETA * 2 * LOGP_TOLERANCE)  # h moves by at most beta * 2 tol


def test_export_refuses_a_file_type_datasets_does_not_read(exported, cli):
    d = exported
    result = cli("export-pairs", "--pairs", str(d / "in" / "pairs.parquet"), "--samples",
                 str(d / "in" / "samples.parquet"), "--scores", str(d / "ref.parquet"), "--out", str(d / "x.csv"))  # fmt: skip
    assert result.exit_code == 2
    assert "must end in .parquet or .jsonl" in result.output


def test_import_refuses_an_implicit_prompt_dataset(tmp_path, cli, tiny_model_dir):
    data = tmp_path / "implicit.jsonl"
    data.write_text(json.dumps({"chosen": "The sky is blue.", "rejected": "The sky is green."}) + "\n")
    result = cli("import-pairs", "--data", str(data), "--out-dir", str(tmp_path / "o"), "--model", tiny_model_dir)
    assert result.exit_code == 2
    assert "needs columns prompt, chosen and rejected" in result.output


def test_train_takes_imported_pairs(exported, tiny_model_dir, cli, tmp_path):
    d = exported / "in"
    result = cli("--quiet", "train", "--model", tiny_model_dir, "--samples", str(d / "samples.parquet"),
                 "--scores", str(d / "scores.parquet"), "--pairs", str(d / "pairs.parquet"), "--loss", "sigmoid",
                 "--beta", str(BETA), "--max-steps", "2", "--batch-size", "2", "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.exit_code == 0, result.output
    log = pq.read_table(tmp_path / "run" / "train_log.parquet").to_pylist()
    assert [r["step"] for r in log] == [0, 1]
    assert log[0]["log_ratio_mean"] == pytest.approx(0.0, abs=1e-4)  # the reference train computed is the policy


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "p", "chosen": None, "rejected": "b"}, "chosen must be text or one assistant message"),
        ({"prompt": "p", "chosen": "a", "rejected": "a"}, "chosen and rejected are the same response"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "weight": -1}, "weight -1 must be a finite number >= 0"),
    ],
)
def test_import_refuses_bad_rows_in_one_line(row, message, tmp_path, cli, tiny_model_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(row) + "\n")
    result = cli("import-pairs", "--data", str(data), "--out-dir", str(tmp_path / "o"), "--model", tiny_model_dir)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "o" / "pairs.parquet").exists()
