"""What every reward shares: the items it scores, its results and options, the Reward protocol with the defaults of its optional parts, the registry behind --reward NAME[:ARG], and small helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from iswcli import sandbox
from iswcli.errors import IswtError, rule_of


@dataclass(frozen=True)
class RewardItem:
    """One sample to score.

    prompt: the original prompt text (for HumanEval, the code prompt);
    response: the model's response; fields: the prompt's task fields
    ('answer' for math; 'test' and 'entry_point' for HumanEval); key:
    (prompt_id, sample_idx); messages: the prompt as chat messages when it
    was given as a conversation; finish_reason: the sampler's ('stop', or
    'length' for a response cut at --max-new-tokens), '' where unknown.
    """

    prompt: str
    response: str
    fields: dict
    key: tuple = ()  # (prompt_id, sample_idx) where known
    messages: tuple = ()  # the prompt as chat messages; () means one user turn of `prompt`
    finish_reason: str = ""


@dataclass(frozen=True)
class RewardResult:
    """A reward and the short reason for it."""

    reward: float
    info: str


@dataclass(frozen=True)
class RewardOptions:
    """Options shared by all rewards (the score stage's flags)."""

    workers: int = 4
    timeout_s: float = 10.0
    memory_mb: int = 1024
    batch_size: int = 16  # sequences per forward pass (rm, pairwise)
    device: str = "auto"  # where reward models run: auto, cpu, cuda[:i]
    baseline: str | None = None  # pairwise: a sample_idx, or a samples/eval file
    samples: str | None = None  # pairwise: the samples artifact a sample_idx baseline comes from


class Reward(Protocol):
    """What the score stage asks of a reward. Results keep input order.

    Besides ``name`` and ``score_batch``, every reward declares the optional
    parts (:class:`BaseReward` gives their defaults): the task fields every
    item must carry, a batch-wide check run before any work, what provenance
    records about it, and the sandbox isolation of rewards that run
    untrusted code.
    """

    name: str
    required_fields: tuple[str, ...]
    isolation: sandbox.Isolation | None

    def check_items(self, items: list[RewardItem]) -> None: ...

    def provenance(self) -> dict[str, Any]: ...

    def score_batch(self, items: list[RewardItem]) -> list[RewardResult]: ...


class BaseReward:
    """The optional parts of :class:`Reward` with their defaults: no fields, no checks, nothing to record."""

    name = ""
    required_fields: tuple[str, ...] = ()
    isolation: sandbox.Isolation | None = None

    def check_items(self, items: list[RewardItem]) -> None:
        return None

    def provenance(self) -> dict[str, Any]:
        return {}


RewardFactory = Callable[[str | None, RewardOptions], Reward]
REWARDS: dict[str, RewardFactory] = {}


def register_reward(name: str) -> Callable[[RewardFactory], RewardFactory]:
    """Decorator: register `factory(arg, options) -> Reward` under `name`."""

    def add(factory: RewardFactory) -> RewardFactory:
        REWARDS[name] = factory
        return factory

    return add


def make_reward(spec: str, options: RewardOptions | None = None) -> Reward:
    """Build the reward named by `spec`: 'NAME' or 'NAME:ARG' (e.g. 'rm:PATH')."""
    name, colon, arg = spec.partition(":")
    factory = REWARDS.get(name)
    if factory is None:
        known = ", ".join(sorted(REWARDS))
        raise IswtError(f"--reward {spec!r}: unknown reward {name!r}; known: {known}")
    return factory(arg if colon else None, options or RewardOptions())


def no_argument(name: str, arg: str | None) -> None:
    """Reject 'math:x' and the like: these rewards take no argument."""
    if arg is not None:
        raise IswtError(f"--reward {name}:{arg}: the {name!r} reward takes no argument")


def require_fields(reward: str, items: list[RewardItem], *keys: str) -> None:
    """Fail before any work if an item lacks a task field the reward needs."""
    for i, item in enumerate(items):
        for key in keys:
            if item.fields.get(key) is None:
                raise IswtError(
                    f"{reward} reward: task field {key!r} is missing "
                    f"(item {i} of the batch); the prompts need a "
                    f"{key!r} column"
                )


def describe_key(key: tuple) -> str:
    """How messages name a sample: "sample (prompt_id='p1', sample_idx=3)"."""
    if len(key) == 2:
        return f"sample (prompt_id={key[0]!r}, sample_idx={key[1]})"
    return "sample (key unknown)"


def prompt_messages(item: RewardItem) -> list[dict]:
    """The prompt as chat messages: the item's own, else one user turn."""
    if item.messages:
        return [dict(m) for m in item.messages]
    return [{"role": "user", "content": item.prompt}]


def chunks(seq: list, size: int) -> list[list]:
    return [seq[i : i + size] for i in range(0, len(seq), max(1, size))]


def reward_model_path(reward: str, spec: str | None):
    """(ModelRef, local path) for rm:SPEC / pairwise:SPEC; SPEC is a model
    directory, an alias such as smollm2-135m, or a hub id."""
    from iswcli import models

    flag = f"--reward {reward}:{spec or ''}"
    if not spec:
        raise IswtError(f"{flag}: name the model, e.g. {reward}:./my-model")
    if spec.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(spec)):
        raise IswtError(f"{flag}: no such model directory")
    try:
        ref = models.resolve_model(spec)
        return ref, models.local_path(ref)
    except IswtError as exc:
        raise IswtError(f"{flag}: {rule_of(exc)}") from None


def model_identity(ref, path: str) -> dict:
    from iswcli import models

    return models.model_identity(ref, path, None)


def quote(s: str, limit: int = 60) -> str:
    """s in double quotes, shortened for an info line."""
    s = " ".join(s.split())
    return '"' + (s if len(s) <= limit else s[: limit - 3] + "...") + '"'
