"""`--config FILE`: a TOML file of a command's flags, read as click's default_map, so flags given on the line win.

Keys are the long flag names as written on the command line, without the
dashes: `max-new-tokens = 256`, `chat-template = false` (for the pair
--chat-template/--no-chat-template), `loss = "tb"`. Values are TOML strings,
integers, floats (an integer is fine for a float option) and booleans. An
unknown key or a value of the wrong type is refused in one line naming the
file and the key; a number outside its flag's domain is refused like the flag
(iswcli/domains.py). The stage then sees exactly the config the same flags on
the command line would give, and its provenance records that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

try:  # typer 0.2x carries its own copy of click
    from typer._click.core import ParameterSource
except ImportError:
    from click.core import ParameterSource

from iswcli.cli_errors import UsageError

_FILE = "iswt.config_file"  # ctx.meta: the --config file the defaults came from
_NOT_KEYS = ("config", "help")
_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def key_of(param) -> str:
    """An option's key in a config file: its long flag name without the dashes."""
    long_names = [opt for opt in param.opts if opt.startswith("--")]
    return (long_names or param.opts)[0].lstrip("-")


def load(ctx: typer.Context, param: typer.CallbackParam, path: str | None) -> None:
    """--config's callback; the option is eager, so the file is read before any other flag."""
    if path is None:
        return
    options = {key_of(p): p for p in ctx.command.params if p.param_type_name == "option"}
    defaults = {}
    for key, value in _read(path).items():
        option = options.get(key) if key not in _NOT_KEYS else None
        if option is None:
            raise UsageError(f"{path}: unknown key {key!r}{_hint(key, options)}", ctx)
        expected = _expected_type(option)
        if not _is_a(value, expected):
            raise UsageError(f"{path}: {key} = {_as_toml(value)}: must be {_TYPES[expected]}", ctx)
        defaults[option.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_FILE] = path


def given_as(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> str:
    """How a value was given, for an error: '--lr inf' on the command line, 'run.toml: lr = inf' from a file."""
    if ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT_MAP and _FILE in ctx.meta:
        return f"{ctx.meta[_FILE]}: {key_of(param)} = {value}"
    return f"--{key_of(param)} {value}"


def _read(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser as a package
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError(f"--config {path}: reading TOML needs Python 3.11 or `pip install tomli`") from None
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: not valid TOML ({exc})") from None


def _expected_type(option) -> type:
    annotation = option.type_descriptor.annotation
    return annotation if annotation in _TYPES else str


def _is_a(value: Any, expected: type) -> bool:
    if isinstance(value, bool) or expected is bool:  # bool is an int to Python, not to a config file
        return isinstance(value, bool) and expected is bool
    return isinstance(value, (int, float) if expected is float else expected)


def _as_toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _hint(key: str, options: dict) -> str:
    """A near miss, spelled as the file should spell it."""
    dashed = key.replace("_", "-")
    if dashed.startswith("no-") and dashed[3:] in options:
        return f" (write {dashed[3:]} = false)"
    if dashed != key and dashed in options:
        return f" (keys are the flag names: {dashed})"
    return ": not a flag of this command"
