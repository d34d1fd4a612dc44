"""Tests for iswcli.tasks: built-in tasks, prompt files, datasets, shards."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import re
from fractions import Fraction

import pytest

from iswcli import tasks
from iswcli.errors import IswtError
from iswcli.tasks import (
    ARITH_INSTRUCTION,
    Prompt,
    load_prompts,
    messages_of,
    parse_shard,
    shard_filter,
    source_description,
)

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 2?"},
]


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(IswtError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _digest(prompts) -> str:
    text = "\n".join(p.prompt_id + "\t" + p.prompt for p in prompts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _eval_exact(expression: str) -> Fraction:
    """Evaluate + - * / over integer literals exactly; every division must be exact."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                value = left + right
            elif isinstance(node.op, ast.Sub):
                value = left - right
            elif isinstance(node.op, ast.Mult):
                value = left * right
            elif isinstance(node.op, ast.Div):
                value = left / right
                assert value.denominator == 1, f"inexact division in {expression}"
            else:
                raise AssertionError(f"operator {node.op} in {expression}")
            assert value > 0, f"non-positive intermediate value in {expression}"
            return value
        raise AssertionError(f"unexpected node {ast.dump(node)} in {expression}")

    return ev(ast.parse(expression, mode="eval"))


def _n_ops(expression: str) -> int:
    return sum(isinstance(n, ast.BinOp) for n in ast.walk(ast.parse(expression, mode="eval")))


# --------------------------------------------------------------------------
# arith


def test_arith_is_deterministic_and_pinned():
    first = load_prompts(task="arith")
    tasks.arith.arith_level.cache_clear()
    second = load_prompts(task="arith")
    assert first == second
    assert first is not second
    # Pinned so that a change of generator, seed or Python version shows up.
    # Changing the templates on purpose: bump ARITH_GENERATOR and these values.
    assert first[0] == Prompt(
        "arith-e79576086e7c",
        "Gus has 13 cards and Sam has 9 cards. How many more cards does Gus have "
        "than Sam? Give the final answer as a number after 'The answer is'.",
        "arith",
        {"answer": "4", "difficulty": 1, "expression": "13 - 9", "template": "l1_compare", "split": "train"},
    )
    assert _digest(first) == "58611bc5f6f45af74f61d60072f419bbb569f06591b16bc0fa01e54e5cfa8fa1"
    assert _digest(load_prompts(task="arith", split="test")) == (
        "a4c40f6b0cbec07f1fd943b92d440e129abfa8e0a497d74cb6d28b71548af692"
    )


@pytest.mark.parametrize("task", ["arith", "arith:1", "arith:2", "arith:3"])
def test_arith_sizes_ids_and_disjoint_splits(task):
    train = load_prompts(task=task)
    assert train == load_prompts(task=task, split="train")
    test = load_prompts(task=task, split="test")
    assert (len(train), len(test)) == (2000, 500)
    for split, prompts in (("train", train), ("test", test)):
        ids = [p.prompt_id for p in prompts]
        texts = [p.prompt for p in prompts]
        assert len(set(ids)) == len(ids)
        assert len(set(texts)) == len(texts)
        for p in prompts:
            assert p.task == "arith"
            assert p.fields["split"] == split
            assert p.prompt_id == "arith-" + hashlib.sha256(p.prompt.encode()).hexdigest()[:12]
    assert not {p.prompt_id for p in train} & {p.prompt_id for p in test}
    assert not {p.prompt for p in train} & {p.prompt for p in test}


def test_arith_splits_disjoint_across_all_variants():
    train = {p.prompt for t in ("arith", "arith:1", "arith:2", "arith:3") for p in load_prompts(task=t)}
    test = {p.prompt for t in ("arith", "arith:1", "arith:2", "arith:3") for p in load_prompts(task=t, split="test")}
    assert not train & test
    # the mixed task draws from the per-level lists, so an id means one problem
    by_id = {}
    for t in ("arith", "arith:1", "arith:2", "arith:3"):
        for split in ("train", "test"):
            for p in load_prompts(task=t, split=split):
                assert by_id.setdefault(p.prompt_id, p) == p


@pytest.mark.parametrize("split", ["train", "test"])
def test_arith_answers_are_exact_and_match_the_text(split):
    for p in load_prompts(task="arith", split=split) + load_prompts(task="arith:3", split=split):
        assert p.prompt.endswith(" " + ARITH_INSTRUCTION)
        body = p.prompt[: -len(ARITH_INSTRUCTION) - 1]
        answer = p.fields["answer"]
        assert isinstance(answer, str) and re.fullmatch(r"[1-9]\d*", answer)
        value = _eval_exact(p.fields["expression"])
        assert value == int(answer)
        # the expression uses exactly the numbers that the text states
        assert set(re.findall(r"\d+", body)) == set(re.findall(r"\d+", p.fields["expression"]))
        # no "1 dollars" / "1 cupcakes"
        assert not re.search(r"\b1 (?!of\b|more\b)\w", body), body


def test_arith_difficulty_levels():
    mixed = load_prompts(task="arith")
    assert [p.fields["difficulty"] for p in mixed[:6]] == [1, 2, 3, 1, 2, 3]
    assert {p.fields["difficulty"] for p in load_prompts(task="arith", limit=3)} == {1, 2, 3}
    for level in (1, 2, 3):
        prompts = load_prompts(task=f"arith:{level}")
        assert {p.fields["difficulty"] for p in prompts} == {level}
        ops = [_n_ops(p.fields["expression"]) for p in prompts]
        biggest = max(int(n) for p in prompts for n in re.findall(r"\d+", p.prompt))
        if level == 1:
            assert set(ops) == {1} and biggest <= 120
        elif level == 2:
            assert set(ops) == {2}
        else:
            assert min(ops) >= 3 and biggest >= 500
        # several templates per level, each used
        assert len({p.fields["template"] for p in prompts}) >= 7


def test_arith_limit_and_split_errors():
    assert load_prompts(task="arith:2", limit=5) == load_prompts(task="arith:2")[:5]
    assert len(load_prompts(task="arith", split="test", limit=10_000)) == 500
    assert _error(load_prompts, task="arith", split="val") == ("--split val: task arith has splits train and test")
    assert _error(load_prompts, task="arith:4") == (
        "--task arith:4: unknown task (choose arith, arith:1, arith:2, arith:3, humaneval, sets)"
    )


# --------------------------------------------------------------------------
# humaneval


def test_humaneval():
    prompts = load_prompts(task="humaneval")
    assert len(prompts) == 164
    assert [p.prompt_id for p in prompts[:2]] == ["HumanEval/0", "HumanEval/1"]
    assert len({p.prompt_id for p in prompts}) == 164
    for p in prompts:
        assert p.task == "humaneval"
        assert isinstance(p.prompt, str) and "def " in p.prompt
        assert set(p.fields) == {"test", "entry_point", "canonical_solution"}
        assert "def check" in p.fields["test"]
        assert f"def {p.fields['entry_point']}" in p.prompt
    first = prompts[0]
    assert first.fields["entry_point"] == "has_close_elements"
    # the canonical solution passes the shipped test (plain exec: trusted data)
    scope: dict = {}
    exec(first.prompt + first.fields["canonical_solution"] + "\n" + first.fields["test"], scope)
    scope["check"](scope[first.fields["entry_point"]])
    assert load_prompts(task="humaneval", limit=3) == prompts[:3]


def test_humaneval_has_no_splits():
    assert _error(load_prompts, task="humaneval", split="test") == ("--split test: task humaneval has no splits")


# --------------------------------------------------------------------------
# prompt files

ROWS = [
    {"prompt_id": "p1", "prompt": "What is 1 + 1?", "answer": 2, "split": "train"},
    {"prompt_id": 7, "prompt": CHAT, "answer": "4", "split": "test"},
    {"prompt_id": "p3", "prompt": "Say hi.", "answer": 3.0, "split": "train"},
]


def _write(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # parquet cannot mix text and messages in one column: messages only there
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, path)
    return str(path)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_file_round_trip(tmp_path, fmt):
    path = _write(tmp_path / f"prompts.{fmt}", ROWS, fmt)
    prompts = load_prompts(prompts=path)
    assert [p.prompt_id for p in prompts] == ["p1", "7", "p3"]
    assert prompts[0].prompt == "What is 1 + 1?"
    assert prompts[1].prompt == tuple(CHAT)
    assert prompts[2].prompt == "Say hi."
    # answers become strings; CSV cells are text already, so 3.0 stays "3.0" there
    assert [p.fields["answer"] for p in prompts] == ["2", "4", "3.0" if fmt == "csv" else "3"]
    assert all(p.task == "custom" for p in prompts)
    assert prompts[0].fields == {"answer": "2", "split": "train"}
    assert messages_of(prompts[0]) == [{"role": "user", "content": "What is 1 + 1?"}]
    assert messages_of(prompts[1]) == CHAT
    # --split filters on the split column, --limit takes the first N after it
    assert [p.prompt_id for p in load_prompts(prompts=path, split="train")] == ["p1", "p3"]
    assert [p.prompt_id for p in load_prompts(prompts=path, split="test")] == ["7"]
    assert [p.prompt_id for p in load_prompts(prompts=path, split="train", limit=1)] == ["p1"]
    assert [p.prompt_id for p in load_prompts(prompts=path, limit=2)] == ["p1", "7"]


def test_parquet_round_trip_text_and_messages(tmp_path):
    text_rows = [
        {"prompt_id": "a", "prompt": "Hello?", "answer": 5, "level": 2},
        {"prompt_id": "b", "prompt": "Bye?", "answer": 6, "level": 3},
    ]
    path = _write(tmp_path / "text.parquet", text_rows, "parquet")
    prompts = load_prompts(prompts=path)
    assert [(p.prompt_id, p.prompt, p.fields) for p in prompts] == [
        ("a", "Hello?", {"answer": "5", "level": 2}),
        ("b", "Bye?", {"answer": "6", "level": 3}),
    ]
    chat_rows = [{"prompt_id": 1, "prompt": CHAT}, {"prompt_id": 2, "prompt": CHAT[1:]}]
    path = _write(tmp_path / "chat.parquet", chat_rows, "parquet")
    prompts = load_prompts(prompts=path)
    assert [p.prompt_id for p in prompts] == ["1", "2"]
    assert prompts[0].prompt == tuple(CHAT)
    assert prompts[1].prompt == tuple(CHAT[1:])
    assert prompts[0].fields == {}


def test_csv_prompt_that_only_looks_like_json_stays_text(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt_id,prompt\nx,"[1, 2, 3] sums to?"\ny,"[1, 2]"\n', encoding="utf-8")
    prompts = load_prompts(prompts=str(path))
    assert [p.prompt for p in prompts] == ["[1, 2, 3] sums to?", "[1, 2]"]


def test_source_description(tmp_path):
    path = _write(tmp_path / "prompts.jsonl", ROWS, "jsonl")
    d = source_description(None, path, "train", 2)
    assert d == {
        "kind": "file",
        "path": path,
        "split": "train",
        "limit": 2,
        "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    }
    d = source_description("arith:2", None, None, None)
    assert d["kind"] == "task" and d["task"] == "arith:2" and d["split"] == "train"
    assert d["generator"] == tasks.ARITH_GENERATOR
    d = source_description("humaneval", None, None, 5)
    assert d["task"] == "humaneval" and d["limit"] == 5 and len(d["sha256"]) == 64
    assert source_description(None, "hf:some/name:test", None, None) == {
        "kind": "hf",
        "name": "some/name",
        "split": "test",
        "limit": None,
    }
    for d in (source_description("arith", None, "test", 3), source_description(None, "hf:x", None, None)):
        assert json.loads(json.dumps(d)) == d
    assert _error(source_description, "humaneval", None, "test", None) == ("--split test: task humaneval has no splits")
    assert _error(source_description, None, str(tmp_path / "nope.csv"), None, None) == (
        f"{tmp_path / 'nope.csv'}: cannot read (No such file or directory)"
    )


# --------------------------------------------------------------------------
# errors


def test_source_choice_errors():
    assert _error(load_prompts) == ("no prompt source: give --task (arith or humaneval) or --prompts FILE")
    assert _error(load_prompts, task="arith", prompts="p.jsonl") == (
        "--task and --prompts: give only one prompt source"
    )
    assert _error(load_prompts, task="gsm8k") == (
        "--task gsm8k: unknown task (choose arith, arith:1, arith:2, arith:3, humaneval, sets)"
    )
    for bad in (0, -3, True, 1.5):
        assert _error(load_prompts, task="arith", limit=bad) == (f"--limit {bad}: must be a whole number of at least 1")


def test_file_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def case(name, content):
        (tmp_path / name).write_text(content, encoding="utf-8")
        return _error(load_prompts, prompts=name)

    assert _error(load_prompts, prompts="prompts.jsonl") == ("prompts.jsonl: cannot read (No such file or directory)")
    (tmp_path / "dir.jsonl").mkdir()
    assert _error(load_prompts, prompts="dir.jsonl") == "dir.jsonl: cannot read (Is a directory)"
    assert _error(load_prompts, prompts="prompts.txt") == (
        "prompts.txt: unsupported prompts file type .txt (use .jsonl, .json, .csv or .parquet)"
    )
    assert _error(load_prompts, prompts="prompts") == (
        "prompts: unsupported prompts file type (no extension) (use .jsonl, .json, .csv or .parquet)"
    )

    assert case("prompts.csv", "id,prompt\n1,hi\n") == "prompts.csv: column 'prompt_id' is missing"
    assert case("prompts.csv", "prompt_id,text\n1,hi\n") == ("prompts.csv: column 'prompt' is missing")
    assert case("prompts.csv", "prompt_id,prompt,prompt\n1,a,b\n") == (
        "prompts.csv: column 'prompt' appears twice in the header"
    )
    assert case("prompts.csv", "prompt_id,prompt\n1,hi\n2,ho,extra\n") == (
        "prompts.csv row 2: 3 cells but the header has 2 columns"
    )
    assert case("prompts.csv", "prompt_id,prompt\n1,hi\n2,  \n") == ("prompts.csv row 2: column 'prompt' is empty")
    assert case("prompts.csv", "prompt_id,prompt\n1,hi\n,ho\n") == ("prompts.csv row 2: column 'prompt_id' is empty")
    assert case("prompts.csv", "") == "prompts.csv: contains no prompts"

    lines = [{"prompt_id": f"p{i}", "prompt": "x"} for i in range(1, 9)]
    lines[6]["prompt_id"] = "p3"
    assert case("prompts.jsonl", "".join(json.dumps(r) + "\n" for r in lines)) == (
        "prompts.jsonl: duplicate prompt_id 'p3' (rows 3 and 7)"
    )
    assert (
        case("prompts.jsonl", '{"prompt_id": 1, "prompt": "a"}\n{"prompt_id": "1", "prompt": "b"}\n')
        == "prompts.jsonl: duplicate prompt_id '1' (rows 1 and 2)"
    )
    good = json.dumps({"prompt_id": "a", "prompt": "x"})
    assert case("prompts.jsonl", f"{good}\n\n\n{{not json\n") == ("prompts.jsonl line 4: not valid JSON")
    assert case("prompts.jsonl", f"{good}\n[1, 2]\n") == ("prompts.jsonl line 2: expected a JSON object")
    assert case("prompts.jsonl", f'{good}\n{{"prompt": "y"}}\n') == (
        "prompts.jsonl row 2: column 'prompt_id' is missing"
    )
    assert case("prompts.jsonl", '{"prompt_id": "a", "prompt": ""}\n') == (
        "prompts.jsonl row 1: column 'prompt' is empty"
    )
    assert case("prompts.jsonl", '{"prompt_id": "a", "prompt": null}\n') == (
        "prompts.jsonl row 1: column 'prompt' is empty"
    )
    assert case("prompts.jsonl", '{"prompt_id": "a", "prompt": []}\n') == (
        "prompts.jsonl row 1: column 'prompt' is empty"
    )
    assert case("prompts.jsonl", '{"prompt_id": [1], "prompt": "x"}\n') == (
        "prompts.jsonl row 1: column 'prompt_id' must be a string or an integer"
    )
    assert case("prompts.jsonl", '{"prompt_id": "a", "prompt": {"role": "user"}}\n') == (
        "prompts.jsonl row 1: column 'prompt' must be text or a list of {'role', 'content'} messages"
    )
    assert case(
        "prompts.jsonl", json.dumps({"prompt_id": "a", "prompt": [{"role": "user", "content": "hi"}, {"role": "user"}]})
    ) == ("prompts.jsonl row 1: column 'prompt' message 2 needs string 'role' and 'content'")
    assert case("prompts.jsonl", json.dumps({"prompt_id": "a", "prompt": [{"role": "usr", "content": "hi"}]})) == (
        "prompts.jsonl row 1: column 'prompt' message 1 has role 'usr' (expected system, user, assistant, tool)"
    )
    assert case("prompts.jsonl", json.dumps({"prompt_id": "a", "prompt": [{"role": "user", "content": " "}]})) == (
        "prompts.jsonl row 1: column 'prompt' is empty"
    )
    assert case("prompts.csv", 'prompt_id,prompt\n1,"[{""role"": ""user""}]"\n') == (
        "prompts.csv row 1: column 'prompt' message 1 needs string 'role' and 'content'"
    )

    assert case("prompts.json", '{"prompt_id": "a"}') == ("prompts.json: expected a JSON list of objects")
    assert case("prompts.json", '[{"prompt_id": "a", "prompt": "x"}, 3]') == (
        "prompts.json row 2: expected a JSON object"
    )
    assert case("prompts.json", '[{"prompt_id": "a",\n') == "prompts.json: not valid JSON (line 2)"
    assert case("prompts.json", "[]") == "prompts.json: contains no prompts"

    (tmp_path / "bad.jsonl").write_bytes(b'{"prompt_id": "a", "prompt": "\xff"}\n')
    assert _error(load_prompts, prompts="bad.jsonl") == "bad.jsonl: cannot read (not UTF-8 text)"
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    assert _error(load_prompts, prompts="bad.parquet").startswith(
        "bad.parquet: cannot read (not a valid Parquet file: "
    )


def test_file_split_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "plain.jsonl", [{"prompt_id": "a", "prompt": "x"}], "jsonl")
    assert _error(load_prompts, prompts="plain.jsonl", split="test") == (
        "--split test: plain.jsonl has no 'split' column"
    )
    _write(tmp_path / "split.jsonl", ROWS, "jsonl")
    assert _error(load_prompts, prompts="split.jsonl", split="val") == (
        "--split val: no rows of split.jsonl have split 'val' (values: test, train)"
    )


def test_duplicates_are_checked_across_splits(tmp_path):
    rows = [{"prompt_id": "a", "prompt": "x", "split": "train"}, {"prompt_id": "a", "prompt": "y", "split": "test"}]
    path = _write(tmp_path / "d.jsonl", rows, "jsonl")
    assert _error(load_prompts, prompts=path, split="train") == (f"{path}: duplicate prompt_id 'a' (rows 1 and 2)")


# --------------------------------------------------------------------------
# Hugging Face datasets (local only: never the network)


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache", raising=False)
    return datasets


def test_hf_saved_dataset(tmp_path, hf_offline):
    datasets = hf_offline
    ds = datasets.Dataset.from_dict(
        {
            "question": ["1 + 1?", "2 + 3?", "4 * 4?"],
            "answer": [2, 5, 16],
            "source": ["a", "b", "c"],
        }
    )
    path = str(tmp_path / "saved")
    ds.save_to_disk(path)
    prompts = load_prompts(prompts=f"hf:{path}")
    assert [p.prompt_id for p in prompts] == [f"{path}:train:{i}" for i in range(3)]
    assert [p.prompt for p in prompts] == ["1 + 1?", "2 + 3?", "4 * 4?"]
    assert prompts[2].fields == {"answer": "16", "source": "c"}
    assert {p.task for p in prompts} == {f"hf:{path}"}
    assert load_prompts(prompts=f"hf:{path}", limit=2) == prompts[:2]
    assert _error(load_prompts, prompts=f"hf:{path}", split="test") == (
        f"--split test: hf:{path} is a saved dataset without splits"
    )


def test_hf_saved_dataset_dict_with_messages_and_ids(tmp_path, hf_offline):
    datasets = hf_offline
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"prompt_id": ["t1", "t2"], "prompt": [CHAT, CHAT[1:]], "answer": ["4", "4"]}
            ),
            "test": datasets.Dataset.from_dict({"prompt_id": ["s1"], "prompt": ["Hello"], "answer": ["x"]}),
        }
    )
    path = str(tmp_path / "dd")
    dd.save_to_disk(path)
    train = load_prompts(prompts=f"hf:{path}")
    assert [p.prompt_id for p in train] == ["t1", "t2"]
    assert train[0].prompt == tuple(CHAT)
    assert train[0].fields == {"answer": "4"}
    test = load_prompts(prompts=f"hf:{path}:test")
    assert [(p.prompt_id, p.prompt) for p in test] == [("s1", "Hello")]
    assert load_prompts(prompts=f"hf:{path}", split="test") == test
    assert load_prompts(prompts=f"hf:{path}:test", split="test") == test
    assert _error(load_prompts, prompts=f"hf:{path}:test", split="train") == (
        f"--split train: conflicts with split 'test' in hf:{path}:test"
    )
    assert _error(load_prompts, prompts=f"hf:{path}:val") == (f"hf:{path}: no split 'val' (splits: test, train)")


def test_hf_local_data_directory(tmp_path, hf_offline):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "a?", "answer": 1}, {"prompt": "b?", "answer": 2}]), data / "train.parquet"
    )
    prompts = load_prompts(prompts=f"hf:{data}")
    assert [(p.prompt_id, p.prompt, p.fields) for p in prompts] == [
        (f"{data}:train:0", "a?", {"answer": "1"}),
        (f"{data}:train:1", "b?", {"answer": "2"}),
    ]


def test_hf_errors(tmp_path, hf_offline, monkeypatch):
    datasets = hf_offline
    monkeypatch.chdir(tmp_path)
    assert _error(load_prompts, prompts="hf:./missing") == ("hf:./missing: no such dataset directory")
    datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "noprompt"))
    assert _error(load_prompts, prompts=f"hf:{tmp_path / 'noprompt'}") == (
        f"hf:{tmp_path / 'noprompt'}: column 'prompt' is missing"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train.parquet").write_bytes(b"not parquet")
    message = _error(load_prompts, prompts=f"hf:{broken}")
    assert message.startswith(f"hf:{broken}: cannot load dataset (")
    assert _error(load_prompts, prompts="hf:") == "hf:: expected hf:NAME or hf:NAME:SPLIT"


# --------------------------------------------------------------------------
# shards


def test_shard_partition():
    prompts = load_prompts(task="arith", split="test") + load_prompts(task="humaneval")
    assert shard_filter(prompts, None) == prompts
    assert shard_filter(prompts, (0, 1)) == prompts
    for n in (2, 3, 7):
        shards = [shard_filter(prompts, (i, n)) for i in range(n)]
        ids = [p.prompt_id for s in shards for p in s]
        assert sorted(ids) == sorted(p.prompt_id for p in prompts)  # union, disjoint
        assert len(ids) == len(set(ids))
        for i, s in enumerate(shards):
            assert s, "every shard gets some prompts"
            position = {p.prompt_id: k for k, p in enumerate(prompts)}
            assert [position[p.prompt_id] for p in s] == sorted(position[p.prompt_id] for p in s)
            # membership depends on the prompt_id alone, not on the list
            assert shard_filter(list(reversed(prompts)), (i, n)) == list(reversed(s))
            assert shard_filter(s[:5], (i, n)) == s[:5]


def test_shard_index_is_sha256_mod_n():
    expected = int(hashlib.sha256(b"HumanEval/0").hexdigest(), 16) % 4
    assert tasks.shard_index("HumanEval/0", 4) == expected
    # pinned: the same shard on every machine
    assert [tasks.shard_index(f"p{i}", 3) for i in range(8)] == [
        int(hashlib.sha256(f"p{i}".encode()).hexdigest(), 16) % 3 for i in range(8)
    ]


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("3/4") == (3, 4)
    assert parse_shard(" 2 / 8 ") == (2, 8)
    assert _error(parse_shard, "3/2") == "--shard 3/2: the shard index i must satisfy 0 <= i < n"
    assert _error(parse_shard, "2/2") == "--shard 2/2: the shard index i must satisfy 0 <= i < n"
    assert _error(parse_shard, "0/0") == "--shard 0/0: the shard count n must be at least 1"
    for bad in ("-1/2", "1", "a/b", "1/2/3", "", "1.0/2"):
        assert _error(parse_shard, bad) == (f"--shard {bad}: expected i/n with whole numbers 0 <= i < n, e.g. 0/4")
    assert _error(shard_filter, [], (5, 3)) == ("--shard 5/3: the shard index i must satisfy 0 <= i < n")
