"""`iswt import-pairs`: a TRL preference dataset as samples, scores and pairs that `iswt train` reads.

Read top to bottom: read the rows (`prompt`, `chosen`, `rejected`, and the
optional `weight`, `ref_chosen_logps`, `ref_rejected_logps`), tokenize each
prompt and response with --model's tokenizer, give every distinct prompt a
prompt_id (a hash of what the model sees) and every distinct response of a
prompt a sample_idx, and write three artifacts into --out-dir:

- samples.parquet: the prompts and responses with their token ids (a
  conversational prompt through the chat template, a response ending in the
  EOS token, as TRL tokenizes them); no sampler made them, so the log-prob
  columns are NaN and train teacher-forces the reference itself;
- scores.parquet: reward 0 (TRL's format holds preferences, not rewards),
  and `logprob_ref` when the dataset has the reference log-probs;
- pairs.parquet: one pair per row, chosen over rejected (r_chosen 1,
  r_rejected 0), its weight normalized to sum to 1 per prompt (uniform
  without a `weight` column).

Then `iswt train --samples DIR/samples.parquet --scores DIR/scores.parquet
--pairs DIR/pairs.parquet --loss sigmoid` trains on it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iswcli import artifacts, models, outputs
from iswcli.errors import IswtError
from iswcli.hashing import combined_sha256
from iswcli.results import StageResult

REF_TOLERANCE = 1e-6  # one response's reference log-prob, given once per pair it is in, must agree


@dataclass(frozen=True)
class ImportPairsConfig:
    data: str  # .parquet, .jsonl or .json
    out_dir: str
    model: str = models.DEFAULT_MODEL  # whose tokenizer makes the token ids


@dataclass(frozen=True, kw_only=True)
class ImportPairsResult(StageResult):
    pairs: int | None = None
    prompts: int | None = None
    samples: int | None = None
    conversational: bool | None = None
    ref_logps: bool | None = None

    def rows(self) -> dict:
        return {
            "output": self.output,
            "pairs": self.pairs,
            "prompts": self.prompts,
            "samples (distinct responses)": self.samples,
            "format": "conversational" if self.conversational else "standard",
            "logprob_ref": "from ref_chosen_logps / ref_rejected_logps" if self.ref_logps else "none",
        }


def read_rows(path: str) -> list[dict]:
    """The dataset's rows; an implicit-prompt dataset (no `prompt` column) is refused."""
    suffix = Path(path).suffix
    if not Path(path).is_file():
        raise IswtError(f"--data {path}: no such file")
    if suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    elif suffix == ".json":
        rows = json.loads(Path(path).read_text())
    else:
        raise IswtError(f"--data {path}: expected .parquet, .jsonl or .json")
    if not rows:
        raise IswtError(f"--data {path}: holds no rows")
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in rows[0]]
    if missing:
        raise IswtError(
            f"--data {path}: needs columns prompt, chosen and rejected (missing {', '.join(missing)}; "
            "an implicit-prompt dataset must be split into prompt and responses first)"
        )
    return rows


def run(c: ImportPairsConfig) -> ImportPairsResult:
    rows = read_rows(c.data)
    out = Path(c.out_dir)
    names = {role: str(out / f"{role}.parquet") for role in ("samples", "scores", "pairs")}
    with outputs.claim(names["pairs"], {"--data": c.data}):
        ref = models.resolve_model(c.model)
        tokenizer = models.load_tokenizer(models.local_path(ref))
        built = _Builder(tokenizer, c.data)
        for i, row in enumerate(rows):
            built.add(i, row)
        source = {"path": c.data, "sha256": combined_sha256([c.data])}
        provenance = artifacts.make_provenance(
            "import-pairs", asdict(c), inputs={"data": source}, tokenizer=ref.spec, format="trl-preference"
        )
        samples, scores, pairs = built.tables()
        artifacts.write_artifact(samples, names["samples"], artifacts.SAMPLES, provenance)
        artifacts.write_artifact(scores, names["scores"], artifacts.SCORES, provenance)
        artifacts.write_artifact(pairs, names["pairs"], artifacts.PAIRS, provenance)
    return ImportPairsResult(
        output=c.out_dir,
        pairs=pairs.num_rows,
        prompts=len(built.prompts),
        samples=samples.num_rows,
        conversational=built.conversational,
        ref_logps=built.has_ref,
    )


class _Builder:
    """Distinct prompts and responses, with the pairs between them, as the rows arrive."""

    def __init__(self, tokenizer, path: str):
        self.tokenizer, self.path = tokenizer, path
        self.prompts: dict[str, dict] = {}  # prompt_id -> prompt, prompt_text, ids, responses {text: sample_idx}
        self.samples: list[dict] = []
        self.ref: dict[tuple[str, int], float] = {}
        self.pairs: list[dict] = []
        self.conversational: bool | None = None
        self.has_ref = True

    def add(self, i: int, row: dict) -> None:
        chat = isinstance(row["prompt"], list)
        if self.conversational is None:
            self.conversational = chat
        elif chat != self.conversational:
            raise IswtError(f"--data {self.path}: row {i} mixes conversational and standard prompts")
        prompt_id = self._prompt(row["prompt"], chat)
        sides = [self._response(prompt_id, self._text(row[k], i, k)) for k in ("chosen", "rejected")]
        if sides[0] == sides[1]:
            raise IswtError(f"--data {self.path}: row {i}: chosen and rejected are the same response")
        for side, key in zip(sides, ("ref_chosen_logps", "ref_rejected_logps")):
            self._reference(prompt_id, side, row.get(key), i, key)
        weight = row.get("weight", 1.0)
        if weight is None or not math.isfinite(weight) or weight < 0:
            raise IswtError(f"--data {self.path}: row {i}: weight {weight!r} must be a finite number >= 0")
        self.pairs.append({"prompt_id": prompt_id, "chosen_idx": sides[0], "rejected_idx": sides[1], "w": weight})

    def _prompt(self, prompt, chat: bool) -> str:
        if chat:
            text, ids = models.render_prompt(self.tokenizer, prompt)
            source = json.dumps(prompt, ensure_ascii=False)
        else:  # TRL feeds a standard prompt to the tokenizer as it is
            text, ids, source = prompt, self.tokenizer(prompt)["input_ids"], prompt
        prompt_id = "trl-" + hashlib.sha256(text.encode()).hexdigest()[:16]
        self.prompts.setdefault(prompt_id, {"source": source, "text": text, "ids": ids, "responses": {}})
        return prompt_id

    def _text(self, value, i: int, key: str) -> str:
        if isinstance(value, list):  # conversational: one assistant message
            if len(value) != 1 or value[0].get("role") != "assistant":
                raise IswtError(f"--data {self.path}: row {i}: {key} must be one assistant message")
            value = value[0].get("content")
        if not isinstance(value, str):
            raise IswtError(f"--data {self.path}: row {i}: {key} must be text or one assistant message")
        return value

    def _response(self, prompt_id: str, text: str) -> int:
        prompt = self.prompts[prompt_id]
        if text not in prompt["responses"]:
            idx = len(prompt["responses"])
            prompt["responses"][text] = idx
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            self.samples.append({"prompt_id": prompt_id, "sample_idx": idx, "response": text, "ids": ids})
        return prompt["responses"][text]

    def _reference(self, prompt_id: str, idx: int, value, i: int, key: str) -> None:
        if value is None:
            self.has_ref = False
            return
        seen = self.ref.setdefault((prompt_id, idx), float(value))
        if abs(seen - float(value)) > REF_TOLERANCE:
            raise IswtError(
                f"--data {self.path}: row {i}: {key} {value} differs from {seen} given for the same response"
            )

    def tables(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        rows = sorted(self.samples, key=lambda s: (s["prompt_id"].encode(), s["sample_idx"]))  # iswt's key order
        nan_lists = [[math.nan] * len(s["ids"]) for s in rows]
        p = [self.prompts[s["prompt_id"]] for s in rows]
        samples = {
            "prompt_id": [s["prompt_id"] for s in rows],
            "sample_idx": pa.array([s["sample_idx"] for s in rows], pa.int32()),
            "task": ["trl-import"] * len(rows),
            "prompt": [x["source"] for x in p],
            "task_fields": ["{}"] * len(rows),
            "prompt_text": [x["text"] for x in p],
            "response": [s["response"] for s in rows],
            "prompt_token_ids": [x["ids"] for x in p],
            "response_token_ids": [s["ids"] for s in rows],
            "token_logprobs_q": nan_lists,
            "logprob_q": [math.nan] * len(rows),
            "token_logprobs_model": nan_lists,
            "logprob_model": [math.nan] * len(rows),
            "n_tokens": pa.array([len(s["ids"]) for s in rows], pa.int32()),
            "finish_reason": ["stop"] * len(rows),
        }
        scores = {
            "prompt_id": samples["prompt_id"],
            "sample_idx": samples["sample_idx"],
            "reward": [0.0] * len(rows),
            "reward_info": ["imported from a TRL preference dataset: preferences only, no reward"] * len(rows),
        }
        if self.has_ref:
            scores["logprob_ref"] = [self.ref[(s["prompt_id"], s["sample_idx"])] for s in rows]
        return _table(artifacts.SAMPLES, samples), _table(artifacts.SCORES, scores), self._pairs_table()

    def _pairs_table(self) -> pa.Table:
        pairs = sorted(self.pairs, key=lambda q: (q["prompt_id"].encode(), q["chosen_idx"], q["rejected_idx"]))
        prompt = np.array([q["prompt_id"] for q in pairs])
        w = np.array([q["w"] for q in pairs], dtype=np.float64)
        total = {pid: w[prompt == pid].sum() for pid in set(prompt.tolist())}
        empty = [pid for pid, t in total.items() if t <= 0]
        if empty:
            raise IswtError(f"--data {self.path}: every pair of a prompt has weight 0 (prompt_id {empty[0]})")
        weight = w / np.array([total[pid] for pid in prompt])
        return _table(
            artifacts.PAIRS,
            {
                "prompt_id": prompt.tolist(),
                "chosen_idx": pa.array([q["chosen_idx"] for q in pairs], pa.int32()),
                "rejected_idx": pa.array([q["rejected_idx"] for q in pairs], pa.int32()),
                "r_chosen": [1.0] * len(pairs),
                "r_rejected": [0.0] * len(pairs),
                "log_weight_base": np.log(np.maximum(weight, np.finfo(float).tiny)),
                "margin_score": [1.0] * len(pairs),
                "weight": weight,
                "method": ["trl-import"] * len(pairs),
            },
        )


def _table(spec: artifacts.ArtifactSpec, columns: dict) -> pa.Table:
    fields = {f.name: f.type for f in spec.schema}
    return pa.table({k: pa.array(v, fields[k]) if k in fields else v for k, v in columns.items()})
