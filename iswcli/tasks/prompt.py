"""A prompt, and rows of a prompts file or dataset turned into prompts (every row checked, errors by row)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from iswcli.errors import IswtError

CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Prompt:
    """One prompt with its task fields."""

    prompt_id: str
    prompt: str | tuple[dict, ...]  # text, or chat messages ({'role', 'content'} dicts)
    task: str  # 'arith', 'humaneval', 'sets', 'custom' (a prompts file) or 'hf:NAME'
    fields: dict  # 'answer' (str) for math-style tasks; 'test', 'entry_point' for HumanEval; ...


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
        raise IswtError(f"{where}: column 'prompt' must be text or a list of {{'role', 'content'}} messages")
    if not value:
        raise IswtError(f"{where}: column 'prompt' is empty")
    messages = []
    for j, m in enumerate(value, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise IswtError(f"{where}: column 'prompt' message {j} needs string 'role' and 'content'")
        if m["role"] not in CHAT_ROLES:
            raise IswtError(
                f"{where}: column 'prompt' message {j} has role '{m['role']}' (expected {', '.join(CHAT_ROLES)})"
            )
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


def rows_to_prompts(rows: list[dict], name: str, task: str, question_ok: bool = False, default_id=None) -> list[Prompt]:
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
            raise IswtError(f"{name}: duplicate prompt_id '{prompt_id}' (rows {first_row[prompt_id]} and {i})")
        first_row[prompt_id] = i
        fields = {k: v for k, v in row.items() if k not in ("prompt_id", prompt_col)}
        if "answer" in fields:
            fields["answer"] = _coerce_answer(fields["answer"])
        out.append(Prompt(prompt_id, prompt, task, fields))
    return out


def chat_messages(prompt: str) -> tuple:
    """A stored prompt column's chat messages when `iswt sample` wrote it as a JSON message list, else ()."""
    if not prompt.lstrip().startswith("["):
        return ()
    try:
        value = json.loads(prompt)
    except ValueError:
        return ()
    is_chat = (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    )
    return tuple(value) if is_chat else ()
