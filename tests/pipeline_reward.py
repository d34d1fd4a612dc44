"""A deterministic dense reward for pipeline tests on a random tiny model (its text has no answers)."""


def length_reward(row: dict, response: str) -> tuple[float, str]:
    value = (len(response) % 7) / 6
    return value, f"len {len(response)} mod 7 / 6"
