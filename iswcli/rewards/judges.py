"""Model-based rewards: a scalar reward model (`rm:PATH`) and a pairwise causal-LM judge against a baseline response (`pairwise:PATH`)."""

from __future__ import annotations

import re

from iswcli.errors import IswtError, first_line
from iswcli.rewards.base import (
    BaseReward,
    RewardItem,
    RewardOptions,
    RewardResult,
    chunks,
    model_identity,
    prompt_messages,
    register_reward,
    reward_model_path,
)


def render_conversation(tokenizer, item: RewardItem) -> list[int]:
    """Token ids of prompt + response: the chat template when the tokenizer
    has one (it supplies the special tokens), else the plain texts joined."""
    messages = prompt_messages(item) + [{"role": "assistant", "content": item.response}]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"]


def classify(model, sequences: list[list[int]], pad_id: int) -> list[float]:
    """Each sequence's first-label logit, one right-padded forward pass.

    Sequence classifiers pool the rightmost token that is not the configured
    pad id; padding with an id that ends no sequence keeps that token the
    last real one even when a sequence ends with the tokenizer's pad token.
    """
    import torch

    ends = {seq[-1] for seq in sequences if seq}
    pad = pad_id if pad_id is not None and pad_id not in ends else min(set(range(len(ends) + 1)) - ends)
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    device = next(model.parameters()).device
    model.config.get_text_config().pad_token_id = pad
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return logits[:, 0].double().tolist()


class RewardModelReward(BaseReward):
    """The logit of a one-label sequence classifier on prompt + response."""

    name = "rm"
    required_fields = ()

    def __init__(self, spec: str | None, options: RewardOptions):
        self.ref, self.path = reward_model_path("rm", spec)
        self.options = options
        self._check_one_label(spec)
        self._loaded = None

    def _check_one_label(self, spec: str) -> None:
        from transformers import AutoConfig

        try:
            labels = AutoConfig.from_pretrained(self.path).num_labels
        except (OSError, ValueError) as exc:
            raise IswtError(f"--reward rm:{spec}: cannot read its config ({first_line(exc)})") from None
        if labels != 1:
            raise IswtError(f"--reward rm:{spec}: has {labels} labels; a scalar reward model has num_labels=1")

    def provenance(self) -> dict:
        return {"reward_model": model_identity(self.ref, self.path)}

    def _load(self):
        if self._loaded is None:
            from transformers import AutoModelForSequenceClassification

            from iswcli import models

            models.quiet_transformers()
            tokenizer = models.load_tokenizer(self.path)
            model = AutoModelForSequenceClassification.from_pretrained(self.path)
            device = models.pick_device(self.options.device)
            self._loaded = tokenizer, model.to(device).eval()
        return self._loaded

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Render, tokenize and classify `batch_size` sequences at a time."""
        tokenizer, model = self._load()
        sequences = [render_conversation(tokenizer, item) for item in items]
        scores: list[float] = []
        for chunk in chunks(sequences, self.options.batch_size):
            scores += classify(model, chunk, tokenizer.pad_token_id)
        how = "chat template" if tokenizer.chat_template else "plain text"
        return [
            RewardResult(score, f"reward model score ({how}, {len(seq)} tokens)")
            for score, seq in zip(scores, sequences)
        ]


@register_reward("rm")
def _make_rm(arg: str | None, options: RewardOptions) -> RewardModelReward:
    return RewardModelReward(arg, options)


JUDGE_QUESTION = (
    "Compare two responses to the same request and decide which is better: "
    "more correct, more helpful and clearer.\n\n"
    "Request:\n{request}\n\n"
    "Response A:\n{a}\n\n"
    "Response B:\n{b}\n\n"
    "Which response is better? Answer with a single letter: A or B."
)


def parse_baseline(value: str | None) -> int | str:
    """--baseline: a sample_idx (whole number) or an existing file/dir/glob."""
    if value is None:
        raise IswtError(
            "--reward pairwise needs --baseline: a sample_idx (that sample "
            "of the same prompt) or a samples/eval file with one response "
            "per prompt_id"
        )
    if re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    from iswcli import artifacts

    try:
        artifacts.resolve_files(value)
    except IswtError as exc:
        raise IswtError(
            f"--baseline {value}: neither a sample_idx (a whole number) nor a samples/eval file ({exc})"
        ) from None
    return value


def _read_responses(path: str, flag: str):
    """prompt_id, sample_idx, response of a samples or eval artifact."""
    import pyarrow as pa

    from iswcli import artifacts

    files = artifacts.resolve_files(path)
    kind = artifacts.read_metadata(files[0])[1] or "samples"
    if kind not in ("samples", "eval"):
        raise IswtError(f"{flag}: {files[0]} is a {kind} artifact; expected samples or eval")
    full = artifacts.SPECS[kind]
    fields = [full.schema.field(n) for n in ("prompt_id", "sample_idx", "response")]
    spec = artifacts.ArtifactSpec(kind, full.key, pa.schema(fields))
    return artifacts.read_artifact(path, spec, columns=["response"])


def load_baselines(baseline: int | str, samples: str | None) -> tuple[dict[str, str], dict]:
    """prompt_id -> baseline response, and what provenance records about it."""
    if isinstance(baseline, int):
        if samples is None:
            raise IswtError(
                f"--baseline {baseline}: a sample_idx baseline needs the samples artifact (RewardOptions.samples)"
            )
        rows = _read_responses(samples, f"--baseline {baseline}").table.to_pylist()
        chosen = {r["prompt_id"]: r["response"] for r in rows if r["sample_idx"] == baseline}
        return chosen, {"sample_idx": baseline}
    art = _read_responses(baseline, f"--baseline {baseline}")
    chosen: dict[str, str] = {}
    for row in art.table.to_pylist():
        if row["prompt_id"] in chosen:
            raise IswtError(
                f"--baseline {baseline}: prompt_id {row['prompt_id']!r} has "
                "more than one response; the file needs one per prompt_id "
                "(or give --baseline SAMPLE_IDX)"
            )
        chosen[row["prompt_id"]] = row["response"]
    return chosen, {"file": art.ref()}


def _request_text(item: RewardItem) -> str:
    messages = prompt_messages(item)
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


class PairwiseReward(BaseReward):
    """A causal LM judge's preference for the response over a baseline.

    For each order (response as A, then as B) the judge's next-token logits
    after the question give logit(letter of response) - logit(letter of
    baseline); the reward is the mean of the two, which cancels a constant
    positional bias.
    """

    name = "pairwise"
    required_fields = ()

    def __init__(self, spec: str | None, options: RewardOptions):
        self.ref, self.path = reward_model_path("pairwise", spec)
        self.options = options
        self.baseline = parse_baseline(options.baseline)
        self.baselines, self.baseline_record = load_baselines(self.baseline, options.samples)
        self._loaded = None

    def provenance(self) -> dict:
        return {"judge_model": model_identity(self.ref, self.path), "baseline": self.baseline_record}

    def check_items(self, items: list[RewardItem]) -> None:
        """Every item needs its key and a baseline for its prompt."""
        for item in items:
            if len(item.key) != 2:
                raise IswtError("pairwise reward: items need their key (prompt_id, sample_idx)")
            if item.key[0] not in self.baselines:
                raise IswtError(f"--baseline {self.baseline}: no baseline response for prompt_id {item.key[0]!r}")

    def _load(self):
        if self._loaded is None:
            from iswcli import models

            tokenizer = models.load_tokenizer(self.path)
            model = models.load_model(self.path, None, models.pick_device(self.options.device))
            self._loaded = tokenizer, model, self._letter_ids(tokenizer)
        return self._loaded

    def _letter_ids(self, tokenizer) -> tuple[int, int]:
        """Token ids of the answers: 'A'/'B' after a chat template's assistant
        header, ' A'/' B' after a plain 'Answer:'."""
        letters = ("A", "B") if tokenizer.chat_template else (" A", " B")
        ids = [tokenizer.encode(x, add_special_tokens=False) for x in letters]
        if any(len(i) != 1 for i in ids):
            raise IswtError(
                f"--reward pairwise:{self.ref.spec}: the judge's tokenizer "
                "does not encode the answers A and B as single tokens"
            )
        return ids[0][0], ids[1][0]

    def _judge_prompt(self, tokenizer, item: RewardItem, a: str, b: str) -> list[int]:
        question = JUDGE_QUESTION.format(request=_request_text(item), a=a, b=b)
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
            )
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        return tokenizer(question + "\nAnswer:")["input_ids"]

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]:
        """Two judge prompts per item, `batch_size` prompts per forward pass."""
        self.check_items(items)
        tokenizer, model, letters = self._load()
        prompts = []
        for item in items:
            base = self.baselines[item.key[0]]
            prompts.append(self._judge_prompt(tokenizer, item, item.response, base))
            prompts.append(self._judge_prompt(tokenizer, item, base, item.response))
        margins: list[float] = []
        for chunk in chunks(prompts, self.options.batch_size):
            margins += letter_margins(model, chunk, tokenizer.pad_token_id, letters)
        results = []
        for i in range(len(items)):
            as_a, as_b = margins[2 * i], -margins[2 * i + 1]
            results.append(
                RewardResult(
                    (as_a + as_b) / 2,
                    f"judge prefers response over baseline by {as_a:+.3f} (response as A), {as_b:+.3f} (response as B)",
                )
            )
        return results


def letter_margins(model, prompts: list[list[int]], pad_id: int, letters: tuple[int, int]) -> list[float]:
    """logit(A) - logit(B) of the next token after each prompt (left padded)."""
    import torch

    from iswcli.logprobs import pad_left, positions

    device = next(model.parameters()).device
    ids, mask = pad_left(prompts, pad_id if pad_id is not None else 0, device)
    with torch.inference_mode():
        logits = (
            model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=1)
            .logits[:, -1]
            .double()
        )
    return (logits[:, letters[0]] - logits[:, letters[1]]).tolist()


@register_reward("pairwise")
def _make_pairwise(arg: str | None, options: RewardOptions) -> PairwiseReward:
    return PairwiseReward(arg, options)
