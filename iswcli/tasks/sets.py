"""`--task sets`: prompts whose rewarded answers are listed, so the target distribution is exactly computable.

Each prompt asks for one member of a small closed set (days, months,
colours, planets, letters, digits with a property, ...) and carries the task
field ``answers``: {answer: reward}. With ``--reward set`` a response earns
answer a's reward exactly when its token ids are a's tokenization followed
by a stop token, and the default reward (0) otherwise; :mod:`iswcli.exact_targets`
then gives pi(a|x), Z(x) and pi* exactly. Some prompts grade their answers
(e.g. weekend days 2, weekdays 1), so that pi* is not just pi_ref restricted
to the set.

The prompts are chat conversations: a system line asking for one word and a
two-turn few-shot prefix that shows the format (one bare word, no
punctuation), then the question. The few-shot questions come from outside
every listed set. Splits: every third entry (0-based index 2, 5, 8, ...) is
``test``, the rest ``train``; ids are ``sets-<name>`` and do not depend on
the split or the limit.
"""

from __future__ import annotations

TASK = "sets"
SPLITS = ("train", "test")
GENERATOR = "sets-v1"
SYSTEM = "You are a quiz assistant. Reply with exactly one word or number and nothing else."
FEW_SHOT = (
    ("Name a fruit.", "Apple"),
    ("Name a number between one and three.", "2"),
)

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
RAINBOW = ("Red", "Orange", "Yellow", "Green", "Blue", "Indigo", "Violet")
PLANETS = ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")
DIGITS = tuple(str(d) for d in range(10))
VOWELS = ("A", "E", "I", "O", "U")
CONSONANTS = tuple(c for c in "BCDFGHJKLMNPQRSTVWXYZ")
GREEK = (
    "Alpha",
    "Beta",
    "Gamma",
    "Delta",
    "Epsilon",
    "Zeta",
    "Eta",
    "Theta",
    "Iota",
    "Kappa",
    "Lambda",
    "Mu",
    "Nu",
    "Xi",
    "Omicron",
    "Pi",
    "Rho",
    "Sigma",
    "Tau",
    "Upsilon",
    "Phi",
    "Chi",
    "Psi",
    "Omega",
)


def _same(names, reward: float = 1.0) -> dict[str, float]:
    return {n: reward for n in names}


# (name, question, answers): graded entries give some answers more reward than others
ENTRIES: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("day", "Name a day of the week.", _same(DAYS)),
    (
        "weekend-best",
        "Name a day of the week. Weekend days are the best answers.",
        {**_same(DAYS[:5]), "Saturday": 2.0, "Sunday": 2.0},
    ),
    ("weekday", "Name a weekday (Monday to Friday).", _same(DAYS[:5])),
    ("weekend", "Name a day of the weekend.", _same(DAYS[5:])),
    ("month", "Name a month of the year.", _same(MONTHS)),
    (
        "winter-best",
        "Name a month of the year. Winter months are the best answers.",
        {**_same(MONTHS), "December": 2.0, "January": 2.0, "February": 2.0},
    ),
    ("summer-month", "Name a summer month.", _same(("June", "July", "August"))),
    ("j-month", "Name a month whose name starts with J.", _same(("January", "June", "July"))),
    ("spring-month", "Name a spring month.", _same(("March", "April", "May"))),
    (
        "month-31",
        "Name a month that has 31 days.",
        _same(("January", "March", "May", "July", "August", "October", "December")),
    ),
    ("rainbow", "Name a colour of the rainbow.", _same(RAINBOW)),
    (
        "rainbow-graded",
        "Name a colour of the rainbow. The earlier in the rainbow, the better.",
        {c: 2.0 - i / 3 for i, c in enumerate(RAINBOW)},
    ),
    ("primary-colour", "Name a primary colour.", _same(("Red", "Blue", "Yellow"))),
    ("warm-colour", "Name a warm colour. Red is the best answer.", {"Red": 2.0, "Orange": 1.0, "Yellow": 1.0}),
    ("traffic-light", "Name a colour of a traffic light.", _same(("Red", "Yellow", "Green", "Amber"))),
    ("flag-colour", "Name a colour of the flag of the United States.", _same(("Red", "White", "Blue"))),
    ("planet", "Name a planet of the solar system.", _same(PLANETS)),
    (
        "planet-size",
        "Name a planet of the solar system. The bigger the planet, the better.",
        {
            "Jupiter": 3.0,
            "Saturn": 2.5,
            "Uranus": 1.5,
            "Neptune": 1.5,
            "Earth": 0.5,
            "Venus": 0.5,
            "Mars": 0.25,
            "Mercury": 0.25,
        },
    ),
    ("gas-giant", "Name a gas giant planet.", {"Jupiter": 1.0, "Saturn": 1.0, "Uranus": 0.5, "Neptune": 0.5}),
    ("inner-planet", "Name a rocky planet of the solar system.", _same(PLANETS[:4])),
    ("vowel", "Name a vowel of the English alphabet.", _same(VOWELS)),
    (
        "vowel-graded",
        "Name a vowel of the English alphabet. A and E are the best answers.",
        {**_same(VOWELS), "A": 2.0, "E": 2.0},
    ),
    ("consonant", "Name a consonant of the English alphabet.", _same(CONSONANTS)),
    ("greek", "Name a letter of the Greek alphabet.", _same(GREEK)),
    ("even-digit", "Name an even digit.", _same(("0", "2", "4", "6", "8"))),
    ("odd-digit", "Name an odd digit.", _same(("1", "3", "5", "7", "9"))),
    ("prime-digit", "Name a prime digit.", _same(("2", "3", "5", "7"))),
    ("digit-graded", "Name a digit. Larger digits are better answers.", {d: int(d) / 3 for d in DIGITS}),
    ("square-digit", "Name a digit that is a perfect square.", _same(("0", "1", "4", "9"))),
    ("multiple-three", "Name a digit that is a multiple of three.", _same(("3", "6", "9"))),
    ("season", "Name a season of the year.", _same(("Spring", "Summer", "Autumn", "Winter", "Fall"))),
    (
        "season-warm",
        "Name a season of the year. Warmer seasons are better answers.",
        {"Summer": 2.0, "Spring": 1.0, "Autumn": 1.0, "Fall": 1.0, "Winter": 0.0},
    ),
    (
        "continent",
        "Name a continent.",
        _same(("Africa", "Antarctica", "Asia", "Australia", "Europe", "North America", "South America")),
    ),
    (
        "continent-size",
        "Name a continent. The bigger the continent, the better.",
        {
            "Asia": 3.0,
            "Africa": 2.5,
            "North America": 2.0,
            "South America": 1.5,
            "Antarctica": 1.0,
            "Europe": 0.5,
            "Australia": 0.25,
        },
    ),
    ("light-colour", "Name a primary colour of light.", _same(("Red", "Green", "Blue"))),
    ("rainbow-blue", "Name a colour of the rainbow. Blue is the best answer.", {**_same(RAINBOW), "Blue": 2.0}),
    ("card-suit", "Name a suit in a deck of playing cards.", _same(("Hearts", "Diamonds", "Clubs", "Spades"))),
    ("chess-piece", "Name a chess piece.", _same(("King", "Queen", "Rook", "Bishop", "Knight", "Pawn"))),
    (
        "chess-value",
        "Name a chess piece. The more valuable the piece, the better.",
        {"Queen": 3.0, "Rook": 5 / 3, "Bishop": 1.0, "Knight": 1.0, "Pawn": 1 / 3, "King": 0.0},
    ),
    ("direction", "Name a compass direction.", _same(("North", "South", "East", "West"))),
    ("matter", "Name a state of matter.", _same(("Solid", "Liquid", "Gas", "Plasma"))),
    ("noble-gas", "Name a noble gas.", _same(("Helium", "Neon", "Argon", "Krypton", "Xenon", "Radon"))),
    ("taste", "Name one of the basic tastes.", _same(("Sweet", "Sour", "Salty", "Bitter", "Umami"))),
    ("sense", "Name one of the five senses.", _same(("Sight", "Hearing", "Smell", "Taste", "Touch"))),
    ("note", "Name a musical note of the C major scale.", _same(tuple("CDEFGAB"))),
    ("autumn-month", "Name an autumn month.", _same(("September", "October", "November"))),
    ("number-word", "Name a number from one to five, in words.", _same(("One", "Two", "Three", "Four", "Five"))),
    (
        "metal-medal",
        "Name the metal of an Olympic medal. Gold is the best answer.",
        {"Gold": 3.0, "Silver": 2.0, "Bronze": 1.0},
    ),
)


def messages(question: str) -> tuple[dict, ...]:
    shots = []
    for q, a in FEW_SHOT:
        shots += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return ({"role": "system", "content": SYSTEM}, *shots, {"role": "user", "content": question})


def rows(split: str) -> list[tuple[str, tuple[dict, ...], dict]]:
    """(prompt_id, chat messages, task fields) of one split, in table order."""
    out = []
    for i, (name, question, answers) in enumerate(ENTRIES):
        if ("test" if i % 3 == 2 else "train") == split:
            out.append((f"sets-{name}", messages(question), {"answers": dict(answers), "question": question}))
    return out


def description(split: str, limit: int | None) -> dict:
    return {
        "kind": "task",
        "task": TASK,
        "split": split,
        "limit": limit,
        "generator": GENERATOR,
        "sizes": {s: len(rows(s)) for s in SPLITS},
    }
