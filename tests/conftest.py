"""Shared fixtures: the embedded tokenizer and a tiny random Llama that uses it.

The tiny model (2 layers, hidden 64) is real transformers code with random
weights: fast enough for every stage test, and it shares SmolLM2's tokenizer
and chat template so prompts render exactly as with the default model.
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from iswcli import models

# One thread per process, for this process and every stage it starts (make -j2, the DDP test, CLI subprocesses).
# The models here are tiny and two processes often run at once on two cores: with a thread per core each, their
# OpenMP threads wait on each other, and a 6x576 @ 576x1536 matmul took 7.6 ms instead of 0.28 ms (measured with
# another process busy). Set before anything imports torch; a value in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])


@pytest.fixture(scope="session")
def smollm_dir() -> str:
    """The embedded SmolLM2-135M-Instruct, materialized once into the cache."""
    return models.local_path(models.resolve_model(models.DEFAULT_MODEL))


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory) -> str:
    """The enumerable toy (tests/toy.py): a one-layer Llama over 12 tokens."""
    from tests.toy import make_toy_model

    return make_toy_model(tmp_path_factory)


@pytest.fixture(scope="session")
def toy_pipeline(toy_model_dir, tmp_path_factory):
    """K=256 offline samples of the toy from pi_ref, their rewards and the frozen log Z (tests/toy.py)."""
    from tests.toy import make_toy_pipeline

    return make_toy_pipeline(toy_model_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm_dir) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def cli():
    """Invoke `iswt ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from iswcli.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(autouse=True)
def _quiet_console():
    """Each test starts from the default console settings."""
    from iswcli import console

    console.settings.quiet = False
    console.settings.json = False
    console.settings.debug = False
    yield
