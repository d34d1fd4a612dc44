"""Every int and float option of every command has a declared domain, and a value outside it is refused in one line.

The command tree is walked, not listed: an option added without a domain fails here.
"""

from __future__ import annotations

import math

import pytest
import typer.testing
from typer.main import get_command

from iswcli.cli import app
from iswcli.domains import COUNT, FRACTION, NON_NEGATIVE, SEED, Domain, domain_of

GROUP = get_command(app)


def _numeric_options():
    for name, command in GROUP.commands.items():
        for param in command.params:
            annotation = getattr(param, "type_descriptor", None) and param.type_descriptor.annotation
            if param.param_type_name == "option" and annotation in (int, float):
                yield name, param


NUMERIC = {f"{name} {param.opts[0]}": (name, param) for name, param in _numeric_options()}


@pytest.fixture
def fast_cli(monkeypatch):
    """`iswt ARGS...` in-process on the command built once (typer rebuilds it per call: 0.1 s, 200 calls here)."""
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: GROUP)
    runner = typer.testing.CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def _outside(domain: Domain) -> list[float]:
    """Values just past each end of the domain (the end itself when it is open)."""
    values = []
    if domain.low is not None:
        values.append(domain.low if domain.low_open else domain.low - 1)
    if domain.high is not None:
        values.append(domain.high if domain.high_open else domain.high + 1)
    return values


def test_the_walk_finds_the_numeric_options_of_every_command():
    assert len(NUMERIC) > 50
    assert {name for name, _ in NUMERIC.values()} >= {"sample", "score", "estimate-z", "weight-pairs", "train"}
    assert "train --max-grad-norm" in NUMERIC and "score --timeout" in NUMERIC


@pytest.mark.parametrize("case", sorted(NUMERIC))
def test_every_numeric_option_declares_a_domain_its_default_lies_in(case):
    _, param = NUMERIC[case]
    domain = domain_of(param)
    assert domain is not None, f"{case}: give the option callback=<a domain from iswcli/domains.py>.check"
    assert domain.integer == (param.type_descriptor.annotation is int), case
    assert param.default is None or domain.admits(param.default), (case, param.default)


@pytest.mark.parametrize("case", sorted(NUMERIC))
def test_nan_inf_and_values_outside_the_domain_are_refused_in_one_line(fast_cli, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    command, param = NUMERIC[case]
    flag = param.opts[0]
    for value in ["nan", "inf", "-inf", *map(str, _outside(domain_of(param)))]:
        result = fast_cli(command, flag, value)
        assert result.exit_code == 2, (case, value, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and flag in lines[0], (case, value, result.stderr)
    assert list(tmp_path.iterdir()) == []  # refused before any work: nothing written


def test_the_messages_name_the_flag_the_value_and_the_rule(fast_cli):
    cases = {
        ("train", "--lr", "inf"): "--lr inf: must be in (0, 1]",
        ("train", "--max-grad-norm", "nan"): "--max-grad-norm nan: must be a finite number >= 0",
        ("train", "--kl-coef", "1e30"): "--kl-coef 1e+30: must be in [0, 1000]",
        ("train", "--z-lr", "-0.01"): "--z-lr -0.01: must be in (0, 1]",
        ("train", "--save-every", "-1"): "--save-every -1: must be at least 0",
        ("train", "--weight-decay", "-0.1"): "--weight-decay -0.1: must be in [0, 1]",
        ("score", "--timeout", "inf"): "--timeout inf: must be in (0, 86400]",
        ("sample", "--n", "2147483648"): "--n 2147483648: must be below 2^31",
        ("estimate-z", "--seed", "-1"): "--seed -1: must be at least 0",
    }
    for args, message in cases.items():
        result = fast_cli(*args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)


def test_max_grad_norm_admits_zero():
    # what 0 means (no clipping, as in HF and TRL) is the trainer's to say; the domain must let it through
    assert domain_of(NUMERIC["train --max-grad-norm"][1]).admits(0.0)


def test_domain_ends_and_rules():
    assert COUNT.admits(1) and not COUNT.admits(0) and not COUNT.admits(2**31) and COUNT.admits(2**31 - 1)
    assert SEED.admits(0) and SEED.admits(2**63 - 1) and not SEED.admits(2**63)
    assert FRACTION.admits(1.0) and not FRACTION.admits(0.0) and not FRACTION.admits(math.nan)
    assert NON_NEGATIVE.admits(0.0) and not NON_NEGATIVE.admits(math.inf) and not NON_NEGATIVE.admits(-1e-300)
    assert (COUNT.rule(0), COUNT.rule(2**31)) == ("at least 1", "below 2^31")
    assert (FRACTION.rule(2.0), NON_NEGATIVE.rule(-1.0)) == ("in (0, 1]", "a finite number >= 0")
    assert (COUNT.brief, FRACTION.brief, NON_NEGATIVE.brief) == ("1<=x<2^31", "0<x<=1", "x>=0")
