"""The `set` reward: a response earns an answer's reward exactly when it *is* that answer, token for token.

``--reward set`` (or ``set:DEFAULT``) reads the task field ``answers``
({answer: reward}). A response earns answer a's reward exactly when its
response token ids are the tokenization of a (no special tokens) followed
by one of the sampling model's stop tokens; any other response earns the
default reward (0, or DEFAULT). ``reward_info`` names the answer that
matched, or says why none did.

Matching is on token ids, not text, so that the rewarded responses are
exactly the |A| sequences that :mod:`iswcli.exact_targets` enumerates by
teacher forcing: "Monday" spelled with other tokens, "Monday." or
"Monday\\n" are not the answer. The token ids, the stop tokens and the
tokenizer (the sampling model's) come from the samples artifact the score
stage reads (``RewardOptions.samples``); it is read once, on first use.
"""

from __future__ import annotations

import json
import math

from iswcli import exact_targets
from iswcli.errors import IswtError
from iswcli.rewards.base import BaseReward, RewardResult, describe_key, register_reward


class SetReward(BaseReward):
    name = "set"
    required_fields = ("answers",)

    def __init__(self, default: float, samples: str | None):
        self.default = default
        self.samples = samples
        self._loaded = None

    def provenance(self) -> dict:
        return {"default": self.default, "match": "response token ids == tokenize(answer) + [stop token]"}

    def _load(self):
        """Response token ids by key, the stop ids and the tokenizer, from the samples artifact."""
        if self._loaded is None:
            from iswcli import artifacts, models

            if not self.samples:
                raise IswtError("set reward: needs the samples artifact (its response token ids and stop tokens)")
            art = artifacts.read_artifact(self.samples, artifacts.SAMPLES, columns=["response_token_ids"])
            table = art.table
            ids = dict(
                zip(
                    zip(table.column("prompt_id").to_pylist(), table.column("sample_idx").to_pylist()),
                    table.column("response_token_ids").to_pylist(),
                )
            )
            stops = (art.provenance.get("sampling") or {}).get("stop_token_ids")
            path = (art.provenance.get("model") or {}).get("path")
            if stops is None or path is None:
                raise IswtError(
                    f"{self.samples}: its provenance names no sampling model or stop tokens; "
                    f"the set reward matches token ids and needs both"
                )
            self._loaded = (ids, list(stops), models.load_tokenizer(path), {})
            self._max_new_tokens = (art.provenance.get("config") or {}).get("max_new_tokens")
        return self._loaded

    def check_items(self, items) -> None:
        """Every answer set checked and tokenized before the first sample is scored (or a progress bar shown)."""
        for item in items:
            self._answers(item)

    def _answers(self, item) -> tuple[dict[str, float], dict[str, tuple[int, ...]]]:
        """An item's answers and their token ids, each distinct answer set checked once."""
        ids_by_key, stops, tokenizer, cache = self._load()
        where = f"set reward: {describe_key(item.key)}"
        if item.key not in ids_by_key:
            raise IswtError(f"{where}: not in {self.samples}, so its token ids are unknown")
        raw = item.fields.get("answers")
        memo = json.dumps(raw, sort_keys=True) if not isinstance(raw, str) else raw
        if memo not in cache:
            answers = exact_targets.parse_answers(raw, where)
            answer_ids = exact_targets.tokenize_answers(tokenizer, answers, where)
            exact_targets.check_reachable(answer_ids, stops, self._max_new_tokens, where)
            cache[memo] = (answers, answer_ids)
        return cache[memo]

    def score_batch(self, items) -> list:
        ids_by_key, stops, _, _ = self._load()
        out = []
        for item in items:
            answers, answer_ids = self._answers(item)
            response = ids_by_key[item.key] or []
            matched = exact_targets.match_answer(response, answer_ids, stops)
            if matched is not None:
                out.append(RewardResult(answers[matched], f"answer {matched!r}"))
            elif not response or response[-1] not in stops:
                out.append(RewardResult(self.default, "no stop token: not an exact answer"))
            else:
                out.append(RewardResult(self.default, "not in the answer set"))
        return out


@register_reward("set")
def make_set_reward(arg: str | None, options) -> SetReward:
    """`set` or `set:DEFAULT` (the reward of every response outside the answer set)."""
    default = 0.0
    if arg is not None:
        try:
            default = float(arg)
        except ValueError:
            raise IswtError(f"--reward set:{arg}: the default reward must be a number") from None
        if not math.isfinite(default):
            raise IswtError(f"--reward set:{arg}: the default reward must be finite")
    return SetReward(default, options.samples)
