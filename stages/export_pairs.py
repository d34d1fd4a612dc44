"""`iswt export-pairs`: a pairs artifact as a TRL preference dataset, its weights kept.

Read top to bottom: join the samples with their scores and the pairs with
the join (`iswcli.chain`, which checks that the pairs were made from these
samples and scores), then write one row per pair in TRL's preference format:
`prompt`, `chosen`, `rejected`, plus `weight` and, when the scores carry
`logprob_ref`, `ref_chosen_logps` / `ref_rejected_logps`. A prompt given as
chat messages gives TRL's conversational format (the prompt's messages, and
each response as one assistant message); a text prompt gives the standard
format with the prompt as the model saw it (`prompt_text`, chat template
included), so that TRL's tokenization meets the tokens iswt scored.
`datasets.load_dataset("parquet" | "json", data_files=OUT)` reads either.

TRL appends the EOS token to standard-format completions; iswt's response
ids hold the stop token only when the sampler stopped (`finish_reason`
stop), so the reference log-probs of a response cut at --max-new-tokens are
one token short of what TRL would compute. The columns `prompt_id`,
`chosen_idx`, `rejected_idx`, `r_chosen` and `r_rejected` keep the way back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iswcli import artifacts, chain, outputs
from iswcli.errors import IswtError
from iswcli.results import StageResult

FORMATS = (".parquet", ".jsonl")
SAMPLE_COLUMNS = ["prompt", "prompt_text", "response"]


@dataclass(frozen=True)
class ExportPairsConfig:
    pairs: str
    samples: str
    scores: str
    out: str  # .parquet or .jsonl


@dataclass(frozen=True, kw_only=True)
class ExportPairsResult(StageResult):
    pairs: int | None = None
    prompts: int | None = None
    conversational: bool | None = None
    ref_logps: bool | None = None  # whether ref_chosen_logps / ref_rejected_logps were written

    def rows(self) -> dict:
        return {
            "output": self.output,
            "pairs": self.pairs,
            "prompts": self.prompts,
            "format": "conversational" if self.conversational else "standard",
            "reference log-probs": "from the scores' logprob_ref" if self.ref_logps else "none in the scores",
        }


def validate(c: ExportPairsConfig) -> None:
    if Path(c.out).suffix not in FORMATS:
        raise IswtError(f"--out {c.out}: must end in .parquet or .jsonl (what datasets.load_dataset reads)")


def run(c: ExportPairsConfig) -> ExportPairsResult:
    validate(c)
    with outputs.claim(c.out, {"--pairs": c.pairs, "--samples": c.samples, "--scores": c.scores}):
        has_ref = chain.has_column(c.scores, "logprob_ref")
        scored = chain.load_scored(
            c.samples,
            c.scores,
            sample_columns=SAMPLE_COLUMNS,
            score_columns=["reward", "logprob_ref"] if has_ref else ["reward"],
            purpose="export",
            min_samples=1,
        )
        pairs = chain.load_pairs(c.pairs, scored)
        table = trl_table(scored, pairs, has_ref)
        provenance = artifacts.make_provenance(
            "export-pairs",
            asdict(c),
            inputs={"samples": scored.samples, "scores": scored.scores, "pairs": pairs.artifact},
        )
        _write(table, c.out, provenance)
    return ExportPairsResult(
        output=c.out,
        pairs=table.num_rows,
        prompts=len(set(table["prompt_id"].to_pylist())),
        conversational=_is_chat(scored.table["prompt"][0].as_py()),
        ref_logps=has_ref,
    )


def trl_table(scored: chain.Scored, pairs: chain.JoinedPairs, has_ref: bool) -> pa.Table:
    """One row per pair: TRL's columns first, then the keys back into iswt's artifacts."""
    t = scored.table
    chosen, rejected = pairs.rows[:, 0], pairs.rows[:, 1]
    sources = t["prompt"].to_pylist()
    chat = _is_chat(sources[0])
    if any(_is_chat(sources[i]) != chat for i in range(len(sources))):
        raise IswtError(f"{scored.samples.path}: mixes chat and text prompts; TRL wants one format per dataset")
    responses = t["response"].to_pylist()
    prompt_of = [json.loads(sources[i]) for i in chosen] if chat else t["prompt_text"].take(chosen).to_pylist()
    side = (lambda i: [{"role": "assistant", "content": responses[i]}]) if chat else (lambda i: responses[i])
    reward = t["reward"].to_numpy()
    columns = {
        "prompt": prompt_of,
        "chosen": [side(i) for i in chosen],
        "rejected": [side(i) for i in rejected],
        "weight": pairs.weight,
    }
    if has_ref:
        ref = scored.finite("logprob_ref", scored.scores.path, "reference log-probs must be finite")
        columns |= {"ref_chosen_logps": ref[chosen], "ref_rejected_logps": ref[rejected]}
    columns |= {
        "prompt_id": t["prompt_id"].take(chosen),
        "chosen_idx": t["sample_idx"].take(chosen),
        "rejected_idx": t["sample_idx"].take(rejected),
        "r_chosen": reward[chosen],
        "r_rejected": reward[rejected],
    }
    return pa.table({k: pa.array(np.asarray(v)) if isinstance(v, np.ndarray) else v for k, v in columns.items()})


def _is_chat(prompt: str | None) -> bool:
    """Samples keep a chat prompt as its messages in JSON (a list), a text prompt as the text."""
    if not prompt or not prompt.lstrip().startswith("["):
        return False
    try:
        messages = json.loads(prompt)
    except ValueError:
        return False
    return isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages)


def _write(table: pa.Table, out: str, provenance: dict) -> None:
    """Parquet carries the provenance in its metadata (datasets ignores it); JSONL is the rows alone."""
    if out.endswith(".parquet"):
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata({"iswt.provenance": json.dumps(provenance)}), sink)
        outputs.write_atomically(out, sink.getvalue().to_pybytes())
        return
    lines = (json.dumps(row, ensure_ascii=False) for row in table.to_pylist())
    outputs.write_atomically(out, "".join(line + "\n" for line in lines))
