"""Arithmetic word problems, generated from fixed seeds with exact integer answers.

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
"""

from __future__ import annotations

import hashlib
import random
from functools import cache

from iswcli.tasks.prompt import Prompt

ARITH_SPLITS = ("train", "test")
ARITH_SEED = 7_204_513
ARITH_TRAIN_SIZE = 2000
ARITH_TEST_SIZE = 500
ARITH_GENERATOR = "arith-v1"
ARITH_INSTRUCTION = "Give the final answer as a number after 'The answer is'."


_NAMES = (
    "Ava",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Mateo",
    "Nina",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Wes",
    "Yuki",
    "Zoe",
)
_OBJECTS = (
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "cookies",
    "books",
    "stamps",
    "shells",
    "cards",
    "balloons",
    "oranges",
    "toy cars",
    "crayons",
    "eggs",
    "buttons",
    "ribbons",
    "cupcakes",
    "beads",
)
_CONTAINERS = (
    ("bag", "bags"),
    ("box", "boxes"),
    ("jar", "jars"),
    ("basket", "baskets"),
    ("pack", "packs"),
    ("crate", "crates"),
)
_ITEMS = (
    ("notebook", "notebooks"),
    ("ticket", "tickets"),
    ("sandwich", "sandwiches"),
    ("toy", "toys"),
    ("plant", "plants"),
    ("kite", "kites"),
    ("puzzle", "puzzles"),
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
    text = f"{a} has {x} {o}. {a} buys {y} {cs} with {z} {o} in each. How many {o} does {a} have now?"
    return text, f"{x} + {y} * {z}", x + y * z


def _l2_give_then_share(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    k, q, g = _int(rng, 2, 9), _int(rng, 2, 12), _int(rng, 1, 20)
    n = k * q + g
    text = (
        f"{a} has {n} {o}. {a} gives {g} of them to {b} and shares the rest equally "
        f"among {k} friends. How many {o} does each friend get?"
    )
    return text, f"({n} - {g}) / {k}", q


def _l2_more_than(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x, y = _int(rng, 2, 40), _int(rng, 2, 20)
    text = f"{a} has {x} {o}. {b} has {y} more {o} than {a}. How many {o} do they have together?"
    return text, f"{x} + ({x} + {y})", x + (x + y)


def _l2_earn_spend(rng):
    a = _pick(rng, _NAMES)
    it, _ = _pick(rng, _ITEMS)
    p, h = _int(rng, 5, 20), _int(rng, 2, 8)
    s = _int(rng, 2, p * h - 1)
    text = (
        f"{a} earns {p} dollars per hour and works {h} hours. Then {a} spends {s} "
        f"dollars on a {it}. How many dollars does {a} have left?"
    )
    return text, f"{p} * {h} - {s}", p * h - s


def _l2_lose_find(rng):
    a = _pick(rng, _NAMES)
    o = _pick(rng, _OBJECTS)
    x = _int(rng, 10, 50)
    y, z = _int(rng, 1, x - 1), _int(rng, 2, 30)
    text = f"{a} has {x} {o}, loses {y} of them, and then finds {z} more. How many {o} does {a} have now?"
    return text, f"{x} - {y} + {z}", x - y + z


def _l2_times_minus(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    x, m = _int(rng, 2, 15), _int(rng, 2, 6)
    g = _int(rng, 2, x * m - 1)
    text = (
        f"{a} has {x} {o}. {b} has {m} times as many {o} as {a}. {b} gives {g} "
        f"{o} away. How many {o} does {b} have now?"
    )
    return text, f"{x} * {m} - {g}", x * m - g


def _l2_change(rng):
    a = _pick(rng, _NAMES)
    _, its = _pick(rng, _ITEMS)
    x, p = _int(rng, 2, 9), _int(rng, 2, 10)
    bill = _pick(rng, tuple(b for b in (20, 50, 100) if b > x * p))
    text = (
        f"{a} buys {x} {its} at {p} dollars each and pays with {bill} dollars. How many dollars of change does {a} get?"
    )
    return text, f"{bill} - {x} * {p}", bill - x * p


def _l2_add_then_group(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    _, cs = _pick(rng, _CONTAINERS)
    k, q = _int(rng, 2, 9), _int(rng, 3, 12)
    y = _int(rng, 1, k * q - 2)
    x = k * q - y
    text = (
        f"{a} has {x} {o} and {b} gives {a} {y} more. {a} puts all of them into "
        f"{cs} of {k}. How many {cs} does {a} fill?"
    )
    return text, f"({x} + {y}) / {k}", q


def _l3_two_packs(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _OBJECTS)
    _, cs = _pick(rng, _CONTAINERS)
    x, y = _int(rng, 3, 15), _int(rng, 6, 24)
    z, w = _int(rng, 2, 12), _int(rng, 10, 30)
    e = _int(rng, 5, x * y + z * w - 1)
    text = (
        f"{a} buys {x} {cs} of {o} with {y} in each and {z} more {cs} with {w} in "
        f"each. {a} gives {e} {o} to {b}. How many {o} does {a} have left?"
    )
    return text, f"{x} * {y} + {z} * {w} - {e}", x * y + z * w - e


def _l3_save_share(rng):
    a = _pick(rng, _NAMES)
    it, _ = _pick(rng, _ITEMS)
    s, w, k = _int(rng, 8, 40), _int(rng, 4, 15), _int(rng, 2, 9)
    t = _exact_removal(rng, s * w, k)
    text = (
        f"{a} saves {s} dollars every week for {w} weeks, spends {t} dollars on a {it}, "
        f"and shares the rest equally among {k} friends. "
        f"How many dollars does each friend get?"
    )
    return text, f"({s} * {w} - {t}) / {k}", (s * w - t) // k


def _l3_bake_pack(rng):
    a, b = _two_names(rng)
    o = _pick(rng, _BAKED)
    t, c, k = _int(rng, 3, 12), _int(rng, 12, 30), _int(rng, 4, 12)
    e = _exact_removal(rng, t * c, k)
    text = (
        f"{a} bakes {t} trays of {c} {o}. {a} and {b} eat {e} of them, and {a} packs "
        f"the rest into boxes of {k}. How many boxes does {a} fill?"
    )
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
    text = (
        f"{a} buys {x} {its1} at {p} dollars each and {y} {its2} at {q} dollars each, "
        f"and pays with {bill} dollars. How many dollars of change does {a} get?"
    )
    return text, f"{bill} - ({x} * {p} + {y} * {q})", bill - cost


def _l3_chain(rng):
    a, b, c = _three_names(rng)
    o = _pick(rng, _OBJECTS)
    x, m = _int(rng, 5, 40), _int(rng, 2, 7)
    d = _int(rng, 2, x * m - 1)
    text = (
        f"{a} has {x} {o}. {b} has {m} times as many {o} as {a}, and {c} has {d} "
        f"fewer {o} than {b}. How many {o} do the three of them have together?"
    )
    return text, f"{x} + {x} * {m} + ({x} * {m} - {d})", x + x * m + (x * m - d)


def _l3_chairs(rng):
    r, c = _int(rng, 8, 30), _int(rng, 10, 25)
    x, y = _int(rng, 3, 40), _int(rng, 5, 60)
    text = (
        f"A hall has {r} rows of {c} chairs. {x} chairs are broken and taken away, and "
        f"{y} new chairs are brought in. How many chairs are in the hall now?"
    )
    return text, f"{r} * {c} - {x} + {y}", r * c - x + y


def _l3_reading(rng):
    a = _pick(rng, _NAMES)
    p, d = _int(rng, 10, 40), _int(rng, 3, 10)
    q, e = _int(rng, 10, 40), _int(rng, 2, 8)
    read = p * d + q * e
    total = read + _int(rng, 5, 200)
    text = (
        f"{a} reads {p} pages a day for {d} days and then {q} pages a day for {e} "
        f"more days. The book has {total} pages. How many pages are left to read?"
    )
    return text, f"{total} - ({p} * {d} + {q} * {e})", total - read


_TEMPLATES = {
    1: (_l1_give_more, _l1_give_away, _l1_containers, _l1_share, _l1_group, _l1_price, _l1_together, _l1_compare),
    2: (
        _l2_have_then_buy,
        _l2_give_then_share,
        _l2_more_than,
        _l2_earn_spend,
        _l2_lose_find,
        _l2_times_minus,
        _l2_change,
        _l2_add_then_group,
    ),
    3: (_l3_two_packs, _l3_save_share, _l3_bake_pack, _l3_shop, _l3_chain, _l3_chairs, _l3_reading),
}


def _text_split(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return "test" if int(digest, 16) % 5 == 0 else "train"


@cache
def arith_level(level: int) -> dict:
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


def arith_prompts(task: str, split: str) -> list[Prompt]:
    if task == "arith":
        per_level = [arith_level(level)[split] for level in (1, 2, 3)]
        size = ARITH_TRAIN_SIZE if split == "train" else ARITH_TEST_SIZE
        rows = [per_level[i % 3][i // 3] for i in range(size)]
    else:
        rows = arith_level(int(task.split(":")[1]))[split]
    return [Prompt(pid, text, "arith", dict(fields)) for pid, text, fields in rows]
