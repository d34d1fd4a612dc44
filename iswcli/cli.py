"""The `iswt` command: one small function per subcommand.

Each command parses its flags into the stage's frozen config, calls the
stage's run(), and prints the summary. Domain errors become one line on
stderr and exit code 2 (a traceback only with --debug). Heavy libraries are
imported inside the stages, so `iswt --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Annotated, Optional

import typer

from iswcli import __version__, console
from iswcli.errors import IswtError

app = typer.Typer(
    name="iswt",
    help="Importance-sampled LLM post-training: sample, score, estimate Z, weight pairs, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iswt {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    global _debug
    _debug = debug
    console.settings.quiet = quiet
    console.settings.json = json_output


@contextmanager
def domain_errors():
    """Turn failures into one line and a non-zero exit, unless --debug."""
    try:
        yield
    except IswtError as exc:
        if _debug:
            raise
        console.fail(str(exc))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.fail("interrupted; re-run the same command to resume where it stopped")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a bug, still reported in one line
        if _debug:
            raise
        console.fail(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)")
        raise typer.Exit(1) from None


# Options shared by the commands that load a model or read prompts.
ModelOpt = Annotated[
    str, typer.Option("--model", help="Alias (smollm2-135m), local HF model directory, or hub id.")
]
AdapterOpt = Annotated[Optional[str], typer.Option("--adapter", help="A peft adapter directory loaded on top.")]
TaskOpt = Annotated[
    Optional[str], typer.Option("--task", help="Built-in task: arith, arith:1..3, humaneval (default arith).")
]
PromptsOpt = Annotated[
    Optional[str], typer.Option("--prompts", help="Prompt file (jsonl, json, csv, parquet) or hf:NAME[:SPLIT].")
]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="train or test, where the source has splits.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Use only the first N prompts.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; same seed, same hardware, same output.")]
OutOpt = Annotated[str, typer.Option("--out", help="Output .parquet path.")]


@app.command()
def sample(
    out: OutOpt,
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    task: TaskOpt = None,
    prompts: PromptsOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    n: Annotated[int, typer.Option("--n", help="Samples per prompt (K).")] = 8,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 256,
    temperature: Annotated[float, typer.Option("--temperature", help="0 is greedy.")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="0 turns top-k off.")] = 0,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")] = 32,
    backend: Annotated[str, typer.Option("--backend", help="hf (transformers) or vllm.")] = "hf",
    shard: Annotated[
        Optional[str], typer.Option("--shard", help="i/n: this job's share of the prompts, 0 <= i < n.")
    ] = None,
    chat_template: Annotated[
        bool, typer.Option("--chat-template/--no-chat-template", help="Apply the tokenizer's chat template.")
    ] = True,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
) -> None:
    """Draw K responses per prompt with per-token log-probs under q and under the raw model."""
    from stages.sample import SampleConfig, run

    if task is None and prompts is None:
        task = "arith"
    config = SampleConfig(
        out=out, model=model, adapter=adapter, task=task, prompts=prompts, split=split, limit=limit,
        n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
        seed=seed, batch_size=batch_size, backend=backend, shard=shard,
        chat_template=chat_template, device=device,
    )  # fmt: skip
    with domain_errors():
        console.show_summary("iswt sample", run(config))


@app.command()
def info(path: Annotated[str, typer.Argument(help="A .parquet file, a directory of shards, or a glob.")]) -> None:
    """Show an artifact's provenance, schema, row count and a summary of each column."""
    from iswcli.info import describe

    with domain_errors():
        described = describe(path)
    if console.settings.json:
        print(json.dumps(described, default=str))
        return
    _print_description(described)


def _print_description(d: dict) -> None:
    from rich.table import Table

    out = console.out
    out.print(f"[bold]{d['path']}[/bold]  kind: {d['kind'] or 'unknown'}  rows: {d['rows']}  files: {len(d['files'])}")
    out.print(f"sha256: {d['sha256']}")
    prov = d["provenance"]
    if prov:
        out.print(
            f"made by: iswt {prov.get('stage')} (v{prov.get('iswt_version')}) at {prov.get('created_at')}, "
            f"seed {prov.get('seed')}"
        )
        out.print_json(json.dumps({k: prov[k] for k in ("config", "inputs", "model") if prov.get(k)}, default=str))
    table = Table(title="columns", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("type")
    table.add_column("summary")
    for name, kind in d["schema"]:
        table.add_row(name, kind, d["columns"][name])
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
