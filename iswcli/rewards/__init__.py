"""Rewards: turn (prompt, response, task fields) into a score and a reason.

A reward is built from a spec string with :func:`make_reward` ('math',
'code', or NAME:ARG for rewards others register with :func:`register_reward`)
and scores a whole batch at once with ``score_batch``; results keep input
order. Every result carries ``info``, a short human-readable why.

- ``math``: math-verify extracts the final answer from the response (its
  LaTeX and expression extraction: the last ``\\boxed{...}`` or "answer is"
  phrase, else the last math or number), parses the task's ``answer`` the
  same way and compares the two. A few rewrites of our own run first, only
  for forms the library misreads (see :func:`normalize_math_text`). Reward
  1.0 or 0.0; ``math:graded`` adds partial credit for near misses.
  math-verify bounds its parsing and comparison time with SIGALRM, which
  works only in the main thread (elsewhere it raises, or runs unbounded if
  its timeouts are switched off, and sympy can then hang on inputs such as
  ``10^{10^{10}}``), so the math reward must be called from the main thread.
- ``code``: HumanEval format. The candidate's program (prompt + completion,
  or its fenced code) runs in the :mod:`iswcli.sandbox`; the task's test runs
  in a separate harness process that never runs candidate code and calls the
  entry point through a proxy that passes plain data only
  (:func:`iswcli.sandbox.run_split`), ``workers`` runs at a time. 1.0 only
  when the harness's ``check`` returned normally.
- ``rm:PATH``: a scalar reward model (sequence classification, one label)
  on prompt + response, rendered with the model's chat template when it has
  one; the reward is its logit.
- ``pairwise:PATH``: a causal LM judge asked whether response A or B is
  better; compares each response with a baseline response for the same
  prompt (``RewardOptions.baseline``: a sample_idx, or a samples/eval file
  with one response per prompt_id). Reward = logit(prefer response) -
  logit(prefer baseline), averaged over both presentation orders, so it is
  antisymmetric in (response, baseline) and 0 for the baseline itself.
- ``python:MODULE:FUNCTION``: ``FUNCTION(row, response)`` returning a float
  or ``(float, info)``; ``row`` holds prompt_id, sample_idx, prompt and the
  task fields. MODULE is a dotted module name or a path to a ``.py`` file.
  Dotted names are imported with the current working directory at the front
  of sys.path (as ``python -m`` does), so a module next to where iswt runs
  is found; PYTHONPATH works too. An exception in the function, or a
  non-number returned, becomes a NaN reward whose info says why, so the
  score stage reports it with the sample's key (or skips it).

Model-based rewards check their paths when built and load the model on
first use, so a bad spec fails before any heavy work.

One module per reward kind (:mod:`.math_answers`, :mod:`.code_tests`,
:mod:`.judges`, :mod:`.user_function`, and :mod:`iswcli.set_reward`), all
behind the :class:`Reward` protocol of :mod:`.base`, which declares the
optional parts (required task fields, batch checks, provenance, sandbox
isolation) instead of leaving the score stage to discover them.
"""

from iswcli.rewards.answer_set import SetReward
from iswcli.rewards.base import (
    REWARDS,
    BaseReward,
    Reward,
    RewardItem,
    RewardOptions,
    RewardResult,
    describe_key,
    make_reward,
    prompt_messages,
    register_reward,
)
from iswcli.rewards.code_tests import CodeReward, build_job, defines, fenced_code
from iswcli.rewards.judges import PairwiseReward, RewardModelReward, classify, load_baselines, parse_baseline
from iswcli.rewards.math_answers import MathReward, as_number, extract_answer, normalize_math_text, partial_credit
from iswcli.rewards.user_function import PythonReward

__all__ = [
    "REWARDS",
    "BaseReward",
    "CodeReward",
    "MathReward",
    "PairwiseReward",
    "PythonReward",
    "Reward",
    "RewardItem",
    "RewardModelReward",
    "SetReward",
    "RewardOptions",
    "RewardResult",
    "as_number",
    "classify",
    "build_job",
    "defines",
    "describe_key",
    "extract_answer",
    "fenced_code",
    "load_baselines",
    "make_reward",
    "normalize_math_text",
    "parse_baseline",
    "partial_credit",
    "prompt_messages",
    "register_reward",
]
