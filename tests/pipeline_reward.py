"""A deterministic dense reward for pipeline tests on a random tiny model (its text has no answers)."""


def length_reward(row: dict, response: str) -> tuple[float, str]:
    value = (len(response) % 7) / 6
    return value, f"len {len(response)} mod 7 / 6"


def letter_reward(row: dict, response: str) -> tuple[float, str]:
    """For the word-level toy model: later letters earn more, anything else 0."""
    value = "abcdefgh".find(response.strip()) + 1
    return value / 8, f"letter {response.strip()!r}"


def has_letter_d(row: dict, response: str) -> tuple[float, str]:
    """A binary reward for the word-level toy model's longer responses: 1 when the letter d appears."""
    value = float("d" in response.split())
    return value, f"d {'in' if value else 'not in'} response"
