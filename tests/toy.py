"""The enumerable toy of the training tests: a one-layer Llama over a 12-token vocabulary answering 'q'
with one token, so every outcome is listable and pi_theta, pi_ref, pi* and Z are exact.

`make_toy_model` and `make_toy_pipeline` back the session fixtures `toy_model_dir` and `toy_pipeline`
(tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from iswcli import artifacts, models

VOCAB = ["<pad>", "<eos>", "<unk>", "q", "a", "b", "c", "d", "e", "f", "g", "h"]
# reward of every single-token response: the closed set is the whole vocabulary
TOY_REWARD = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.0, 2.0, 0.0, 1.0, 0.0, 1.5])
BETA = 1.0


def make_toy_model(tmp_path_factory) -> str:
    """A tiny Llama over a 12-token vocabulary with a word-level tokenizer and no chat template."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(3)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a non-uniform reference, so pi* and pi_ref differ visibly
        model.lm_head.weight.mul_(20)
    path = tmp_path_factory.mktemp("toy-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def response_distribution(model_dir: str, adapter: str | None = None) -> np.ndarray:
    """The model's exact distribution over the closed set of one-token responses to 'q'."""
    model = models.load_model(model_dir, adapter)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[VOCAB.index("q")]])).logits[0, -1]
    return logits.double().softmax(-1).numpy()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * (np.log(p) - np.log(q))))


def write_scores(samples_path: Path, out: Path, reward_of=lambda ids: TOY_REWARD[ids[0]], **columns) -> None:
    table = pq.read_table(samples_path)
    responses = table.column("response_token_ids").to_pylist()
    data = {
        "prompt_id": table.column("prompt_id"),
        "sample_idx": table.column("sample_idx"),
        "reward": [float(reward_of(r)) for r in responses],
        "reward_info": ["toy"] * table.num_rows,
        **columns,
    }
    artifacts.write_artifact(pa.table(data), str(out), artifacts.SCORES, artifacts.make_provenance("score", {}))


def make_toy_pipeline(toy_model_dir, tmp_path_factory) -> Path:
    """K=256 offline samples from pi_ref, their rewards, and the frozen log Z."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    d = tmp_path_factory.mktemp("toy-run")
    runner = CliRunner()
    prompts = d / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt_id": "toy", "prompt": "q"}) + "\n")
    sample = [
        "--quiet",
        "sample",
        "--model",
        toy_model_dir,
        "--prompts",
        str(prompts),
        "--n",
        "256",
        "--max-new-tokens",
        "1",
        "--no-chat-template",
        "--out",
        str(d / "samples.parquet"),
    ]
    assert runner.invoke(app, sample).exit_code == 0
    write_scores(d / "samples.parquet", d / "scores.parquet")
    estimate_z(d)
    return d


def estimate_z(d: Path) -> None:
    """estimate-z on d/samples.parquet and d/scores.parquet at BETA, into d/z.parquet."""
    from typer.testing import CliRunner

    from iswcli.cli import app

    files = ["--proposal", str(d / "samples.parquet"), "--scores", str(d / "scores.parquet")]
    result = CliRunner().invoke(
        app, ["--quiet", "estimate-z", *files, "--beta", str(BETA), "--out", str(d / "z.parquet")]
    )
    assert result.exit_code == 0, result.output


def train_args(d: Path, model_dir: str, out: Path, *extra) -> list[str]:
    return [
        "--quiet",
        "train",
        "--model",
        model_dir,
        "--samples",
        str(d / "samples.parquet"),
        "--scores",
        str(d / "scores.parquet"),
        "--beta",
        str(BETA),
        "--out",
        str(out),
        *map(str, extra),
    ]
