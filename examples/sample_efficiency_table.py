"""The sample-efficiency study's tables and plot (examples/sample_efficiency.mk), and its two helpers.

    python examples/sample_efficiency_table.py OUT [--lr-from DIR]   # Markdown tables + OUT/sample_efficiency.png
    python examples/sample_efficiency_table.py lr OUT METHOD  # the sweep's chosen learning rate for METHOD
    python examples/sample_efficiency_table.py grid-lr RUN    # the learning rate a grid run trained at
    python examples/sample_efficiency_table.py permute SCORES OUT --seed S   # the null control's scores

Each run's OUT/nN-sSEED/RUN/target_curves.parquet holds per-prompt kl_set (and the other curves) at step 0
(the base model) and after the last update. Per method and N: each prompt's change from the base model is
averaged over the seeds, and the mean over prompts gets a 95% percentile bootstrap interval (prompts
resampled); the same for each method's paired difference to RSO on the same samples.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iswcli import artifacts, metrics
from iswcli.errors import IswtError
from iswcli.target_curves import PER_PROMPT_FILE, read_ends
from iswcli.target_eval import read_target_values
from iswcli.train_steps import diverging

METRICS = ("kl_set", "tv_set", "p_valid", "eff_answers")
ORDER = ("disa", "dpg", "learned", "sft", "iso", "iso-all", "direct", "rso", "rso4n", "null-disa", "null-dpg")
GROUP_NAMES = {"train": "training", "heldout": "held-out"}
SWEEP_CELL = re.compile(r"n(\d+)-s(\d+)")
SWEEP_RUN = re.compile(r"(.+)-lr(.+)")
USAGE = (
    "usage: sample_efficiency_table.py OUT [--lr-from DIR] | lr OUT METHOD | grid-lr RUN | permute SCORES OUT --seed S"
)


# ---------------------------------------------------------------- reading runs


def ends(run: Path, group: str | None = None) -> dict:
    """read_ends of a finished run (or of one of its groups), refusing by name a run without those curves."""
    found = read_ends(run)
    if found is None:
        raise IswtError(f"{run}: no {PER_PROMPT_FILE} (trained without --eval-target-every)")
    if group is not None and group not in found:
        raise IswtError(f"{run}: no {GROUP_NAMES[group]} curves (trained without --eval-prompts)")
    return found if group is None else found[group]


def log_rows(run: Path) -> list[dict]:
    """A run's train_log.parquet rows, through the readable-artifact guard."""
    path = run / "train_log.parquet"
    if not path.exists():
        raise IswtError(f"{run}: no train_log.parquet")
    with artifacts.readable(str(path)):
        return pq.read_table(path).to_pylist()


def manifest_lr(manifest: Path) -> float:
    """The learning rate a finished run's manifest.json records."""
    try:
        return float(json.loads(manifest.read_text())["config"]["lr"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IswtError(f"{manifest}: not a readable train manifest with config.lr ({type(exc).__name__})") from None


def cell_of(directory: Path) -> tuple[int, int]:
    """(N, seed) of a grid cell named nN-sSEED."""
    m = SWEEP_CELL.fullmatch(directory.name)
    if m is None:
        raise IswtError(f"{directory}: a cell directory holding runs must be named nN-sSEED (e.g. n32-s0)")
    return int(m.group(1)), int(m.group(2))


def sweep_runs(out: Path, sweep_cell: str) -> dict[str, dict[str, Path]]:
    """method -> learning rate -> run directory, for the sweep's cell."""
    runs: dict[str, dict[str, Path]] = defaultdict(dict)
    for manifest in sorted((out / sweep_cell).glob("*-lr*/manifest.json")):
        m = SWEEP_RUN.fullmatch(manifest.parent.name)
        runs[m.group(1)][m.group(2)] = manifest.parent
    return runs


def sweep_cell(out: Path) -> str:
    cells = sorted({p.parent.parent.name for p in out.glob("*/*-lr*/manifest.json")})
    if len(cells) != 1:
        raise IswtError(f"{out}: expected the sweep's runs in one cell, found {', '.join(cells) or 'none'}")
    return cells[0]


def chosen_lr(out: Path, method: str) -> str:
    """The rate with the lowest final training kl_set in the sweep (ties: the smaller rate)."""
    runs = sweep_runs(out, sweep_cell(out)).get(method)
    if not runs:
        raise IswtError(f"{out}: no finished sweep runs for {method}")
    score = {lr: np.mean([v["kl_set"] for v in ends(run, "train").values()]) for lr, run in runs.items()}
    return min(score, key=lambda lr: (score[lr], float(lr)))


def grid(out: Path) -> dict[tuple[str, int], dict[int, Path]]:
    """(method, N) -> seed -> run directory: the grid's runs (the sweep's chosen runs are copied into it)."""
    runs: dict[tuple[str, int], dict[int, Path]] = defaultdict(dict)
    for manifest in sorted(out.glob("n*-s*/*/manifest.json")):
        name = manifest.parent.name
        if name.startswith("defaults-") or SWEEP_RUN.fullmatch(name):
            continue
        n, seed = cell_of(manifest.parent.parent)
        runs[name, n][seed] = manifest.parent
    return runs


# ---------------------------------------------------------------- statistics


def per_prompt_change(runs: dict[int, Path], group: str, metric: str) -> dict[str, float]:
    """Each prompt's (final - base) metric, averaged over the seeds that finished."""
    changes: dict[str, list[float]] = defaultdict(list)
    for run in runs.values():
        for prompt, v in ends(run, group).items():
            changes[prompt].append(v[metric] - v[f"base_{metric}"])
    return {p: float(np.mean(v)) for p, v in changes.items()}


def interval(values) -> metrics.BootstrapCI:
    return metrics.bootstrap_ci(np.asarray(list(values), dtype=float), 2000, 0)


def ci_text(ci) -> str:
    return "n/a" if ci.n == 0 else f"{ci.estimate:+.3f} [{ci.lo:+.3f}, {ci.hi:+.3f}]"


# ---------------------------------------------------------------- tables


def grid_lr(out: Path, cell: str, method: str) -> float | None:
    """The learning rate the grid's run of METHOD in CELL trained at (None when it has not run)."""
    manifest = out / cell / method / "manifest.json"
    return manifest_lr(manifest) if manifest.exists() else None


def sweep_table(sweep: Path, out: Path) -> list[str]:
    """SWEEP's sweep runs; "(chosen)" marks the rate OUT's grid trained each method at."""
    if not list(sweep.glob("*/*-lr*/manifest.json")):
        return [f"No learning-rate sweep in {sweep}."]
    cell = sweep_cell(sweep)
    lines = [
        f"Learning-rate sweep ({sweep}, {cell}): final kl_set on the training prompts (base {{base}}), "
        "loss first -> last",
        "",
        "| method | lr | kl_set (train) | kl_set (held-out) | loss first -> last | diverged at step |",
        "|---|---|---|---|---|---|",
    ]
    base = None
    for method, runs in sorted(sweep_runs(sweep, cell).items(), key=lambda kv: _rank(kv[0])):
        for lr, run in sorted(runs.items(), key=lambda kv: float(kv[0])):
            fb = ends(run)
            base = np.mean([v["base_kl_set"] for v in ends(run, "train").values()])
            log = [r for r in log_rows(run) if r.get("loss") is not None]
            losses = [r["loss"] for r in log if np.isfinite(r["loss"])]
            diverged = next((i for i in range(len(losses)) if diverging(losses[: i + 1])), None)  # today's rule
            chosen = " (chosen)" if grid_lr(out, cell, method) == float(lr) else ""
            lines.append(
                f"| {method} | {lr}{chosen} | {np.mean([v['kl_set'] for v in fb['train'].values()]):.3f} | "
                f"{np.mean([v['kl_set'] for v in fb.get('heldout', {}).values()] or [np.nan]):.3f} | "
                f"{losses[0]:.3f} -> {losses[-1]:.3f} | {'-' if diverged is None else diverged} |"
            )
    lines[0] = lines[0].replace("{base}", f"{base:.3f}" if base is not None else "n/a")
    return lines


def by_n_header(title: str, ns: list[int]) -> list[str]:
    """A table's title and header: a row per method, a column per N."""
    return [title, "", "| method | " + " | ".join(f"N = {n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]


def change_table(out: Path, group: str) -> list[str]:
    runs = grid(out)
    ns = sorted({n for _, n in runs})
    lines = by_n_header(
        f"kl_set change from the base model on the {GROUP_NAMES[group]} prompts, mean over prompts [95% CI] "
        "(seeds averaged per prompt; seeds finished in parentheses)",
        ns,
    )
    base = {}
    for (_, n), seeds in runs.items():
        base[n] = np.mean([v["base_kl_set"] for v in ends(next(iter(seeds.values())), group).values()])
    for method in sorted({m for m, _ in runs}, key=_rank):
        cells = []
        for n in ns:
            seeds = runs.get((method, n))
            cells.append(
                ""
                if not seeds
                else f"{ci_text(interval(per_prompt_change(seeds, group, 'kl_set').values()))} ({len(seeds)})"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("| base kl_set | " + " | ".join(f"{base.get(n, np.nan):.3f}" for n in ns) + " |")
    return lines


def versus_table(out: Path, group: str, title: str, pairs: list[tuple[str, str]]) -> list[str]:
    """Each (method, baseline) pair's difference on the same samples and seeds: per prompt, averaged over the
    seeds both finished, with a 95% interval over prompts."""
    runs = grid(out)
    ns = sorted({n for _, n in runs})
    lines = by_n_header(title, ns)
    for method, baseline in pairs:
        cells = []
        for n in ns:
            mine, base = runs.get((method, n), {}), runs.get((baseline, n), {})
            common = sorted(set(mine) & set(base))
            if not common:
                cells.append("")
                continue
            a = per_prompt_change({s: mine[s] for s in common}, group, "kl_set")
            b = per_prompt_change({s: base[s] for s in common}, group, "kl_set")
            cells.append(f"{ci_text(interval(a[p] - b[p] for p in a))} ({len(common)})")
        lines.append(f"| {method} - {baseline} | " + " | ".join(cells) + " |")
    return lines


def versus_rso_table(out: Path, group: str) -> list[str]:
    """Each method minus RSO on the same samples (the null controls have their own table)."""
    methods = sorted({m for m, _ in grid(out) if m != "rso" and not m.startswith("null-")}, key=_rank)
    title = (
        f"kl_set of each method minus RSO's at equal samples ({GROUP_NAMES[group]} prompts, paired by prompt and "
        "seed): below 0 is closer to pi*"
    )
    return versus_table(out, group, title, [(m, "rso") for m in methods])


def versus_null_table(out: Path, group: str) -> list[str]:
    """Each method minus its null control (the same samples with rewards permuted within each prompt)."""
    methods = sorted({m.removeprefix("null-") for m, _ in grid(out) if m.startswith("null-")}, key=_rank)
    title = (
        f"kl_set of each method minus its null control's ({GROUP_NAMES[group]} prompts, paired by prompt and "
        "seed): what the rewards, not the training on the samples as such, moved"
    )
    return versus_table(out, group, title, [(m, f"null-{m}") for m in methods])


def defaults_table(out: Path) -> list[str]:
    """train with only the loss, the inputs and --epochs 3 (the `defaults` target)."""
    runs: dict[str, dict[int, Path]] = defaultdict(dict)
    for manifest in sorted(out.glob("n*-s*/defaults-*/manifest.json")):
        seed = cell_of(manifest.parent.parent)[1]
        runs[manifest.parent.name.removeprefix("defaults-")][seed] = manifest.parent
    lines = [
        "train's defaults (lr 1e-4, warm-up a tenth, batch 8, LoRA) with --epochs 3: kl_set change from the base "
        "model, mean over prompts [95% CI] (seeds averaged per prompt)",
        "",
        "| loss | seeds | training prompts | held-out prompts |",
        "|---|---|---|---|",
    ]
    for loss, seeds in runs.items():
        cells = [ci_text(interval(per_prompt_change(seeds, g, "kl_set").values())) for g in ("train", "heldout")]
        lines.append(f"| {loss} | {len(seeds)} | " + " | ".join(cells) + " |")
    return lines


def online_table(out: Path, sweep_n: int = 32) -> list[str]:
    """The `online` target: T rounds against the grid's offline run at N = sweep_n on the same seed, per prompt."""
    final: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)  # (method, group) -> seed -> kl
    for path in sorted(out.glob("online-s*/*/eval-*.target.parquet")):
        seed, method = int(path.parent.parent.name.removeprefix("online-s")), path.parent.name
        group = "train" if path.name.startswith("eval-train") else "heldout"
        final[method, group][seed] = {p: v["kl_set"] for p, v in read_target_values(str(path)).items()}
    if not final:
        return ["No online rounds in this study."]
    runs = grid(out)
    lines = [
        f"Online rounds at N = {sweep_n} samples per prompt in all: kl_set change from the base model, and the online "
        "run minus the offline grid run on the same seed (paired by prompt and seed); mean over prompts [95% CI] "
        "(seeds in parentheses)",
        "",
        "| method | change (train) | online - offline (train) | change (held-out) | online - offline (held-out) |",
        "|---|---|---|---|---|",
    ]
    for method in sorted({m for m, _ in final}, key=_rank):
        offline = runs.get((method, sweep_n), {})
        common = sorted(set(final.get((method, "train"), {})) & set(offline))
        if not common:
            lines.append(f"| {method} | no offline run on the same seed |  |  |  |")
            continue
        cells = []
        for group in ("train", "heldout"):
            online, at = final[method, group], {s: ends(offline[s], group) for s in common}
            change = [np.mean([online[s][p] - at[s][p]["base_kl_set"] for s in common]) for p in at[common[0]]]
            versus = [np.mean([online[s][p] - at[s][p]["kl_set"] for s in common]) for p in at[common[0]]]
            cells += [f"{ci_text(interval(change))} ({len(common)})", f"{ci_text(interval(versus))} ({len(common)})"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if ("iso", "train") in final and ("rso", "train") in final:
        cells = []
        for group in ("train", "heldout"):
            iso, rso = final["iso", group], final["rso", group]
            common = sorted(set(iso) & set(rso))
            diff = [np.mean([iso[s][p] - rso[s][p] for s in common]) for p in iso[common[0]]]
            cells += [f"{ci_text(interval(diff))} ({len(common)})", ""]
        lines.append("| iso - rso, both online | " + " | ".join(cells) + " |")
    return lines


def long_table(out: Path, group: str) -> list[str]:
    """The `long` target: each method's mean kl_set over the prompts at every measured step (train's log)."""
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))  # method -> step -> per seed
    rates: dict[str, float] = {}
    seeds: dict[str, int] = defaultdict(int)
    for manifest in sorted(out.glob("long-s*/*/manifest.json")):
        method, log = manifest.parent.name, log_rows(manifest.parent)
        seeds[method] += 1
        for row in log:
            if row.get(f"{group}_kl_set") is not None and not np.isnan(row[f"{group}_kl_set"]):
                curves[method][row["step"]].append(row[f"{group}_kl_set"])
        rates[method] = manifest_lr(manifest)
    if not curves:
        return ["No longer runs in this study."]
    methods = sorted(curves, key=_rank)
    lines = [
        f"Training past the budget at the grid's rate: mean kl_set over the {GROUP_NAMES[group]} prompts at each "
        "measured step (step 0: the base model; seeds in parentheses)",
        "",
        "| step | " + " | ".join(f"{m} (lr {rates[m]:g}, {seeds[m]})" for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for step in sorted({step for c in curves.values() for step in c}):
        cells = [f"{np.mean(curves[m][step]):.3f}" if step in curves[m] else "" for m in methods]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def plot(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = grid(out)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, group in zip(axes, ("train", "heldout")):
        ns = sorted({n for _, n in runs})
        for i, method in enumerate(sorted({m for m, n in runs if not m.startswith("null")}, key=_rank)):
            xs, ys, lo, hi = [], [], [], []
            for n in ns:
                seeds = runs.get((method, n))
                if not seeds:
                    continue
                ci = interval(per_prompt_change(seeds, group, "kl_set").values())
                xs.append(n * (1 + 0.03 * (i - 3))), ys.append(ci.estimate), lo.append(ci.lo), hi.append(ci.hi)
            yerr = [np.subtract(ys, lo), np.subtract(hi, ys)]
            ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=3, label=method)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("samples per prompt N")
        ax.set_title(f"{GROUP_NAMES[group]} prompts{' (test split)' if group == 'heldout' else ''}")
    axes[0].set_ylabel("kl_set change from the base model (95% CI)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "sample_efficiency.png"
    fig.savefig(path, dpi=110)
    return path


def _rank(method: str) -> int:
    return ORDER.index(method) if method in ORDER else len(ORDER)


# ---------------------------------------------------------------- the null control's scores


def permute(scores: str, out: str, seed: int) -> None:
    """The scores with their rewards shuffled within each prompt: same reward multiset, no link to the samples."""
    art = artifacts.read_artifact(scores, artifacts.SCORES)
    table = art.table
    rng = np.random.default_rng(seed)
    reward = np.asarray(table["reward"].to_numpy(zero_copy_only=False), dtype=float).copy()
    prompt = np.asarray(table["prompt_id"].to_pylist())
    for p in np.unique(prompt):
        rows = np.flatnonzero(prompt == p)
        reward[rows] = reward[rng.permutation(rows)]
    table = table.set_column(table.column_names.index("reward"), "reward", pa.array(reward))
    provenance = {**art.provenance, "null_control": f"rewards permuted within each prompt, seed {seed}"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_artifact(table, out, artifacts.SCORES, provenance)


def main(argv: list[str]) -> None:
    """Each form's arguments checked before any work; a refusal is one line on stderr and exit code 2."""
    try:
        run_command(argv)
    except IswtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_command(argv: list[str]) -> None:
    command = argv[0] if argv else None
    if command == "lr":
        _arguments(argv, 3)
        print(chosen_lr(_directory(argv[1]), argv[2]))
    elif command == "grid-lr":
        _arguments(argv, 2)
        run = Path(argv[1])
        lr = grid_lr(run.parent.parent, run.parent.name, run.name)
        if lr is None:
            raise IswtError(f"{run}: no finished run there (no manifest.json)")
        print(lr)
    elif command == "permute":
        if len(argv) != 5 or argv[3] != "--seed" or not argv[4].lstrip("-").isdigit():
            raise IswtError(f"permute needs SCORES OUT --seed S (an integer); {USAGE}")
        permute(argv[1], argv[2], int(argv[4]))
    else:
        if (
            not argv
            or argv[0].startswith("-")
            or len(argv) not in (1, 3)
            or (len(argv) == 3 and argv[1] != "--lr-from")
        ):
            raise IswtError(USAGE)
        out = _directory(argv[0])
        lr_from = _directory(argv[2]) if len(argv) == 3 else out
        if not grid(out):
            raise IswtError(f"{out}: holds no finished grid run (nN-sSEED/METHOD/manifest.json)")
        tables = [sweep_table(d, out) for d in dict.fromkeys((lr_from, out))]
        tables += [
            change_table(out, "train"),
            change_table(out, "heldout"),
            versus_rso_table(out, "train"),
            versus_rso_table(out, "heldout"),
            versus_null_table(out, "train"),
            versus_null_table(out, "heldout"),
            defaults_table(out),
            online_table(out),
            long_table(out, "train"),
            long_table(out, "heldout"),
        ]  # every table read before anything is printed or plotted
        for lines in tables:
            print("\n".join(lines) + "\n")
        print(f"plot: {plot(out)}")


def _arguments(argv: list[str], count: int) -> None:
    if len(argv) != count:
        raise IswtError(f"{argv[0]}: expects {count - 1} argument(s); {USAGE}")


def _directory(path: str) -> Path:
    if not Path(path).is_dir():
        raise IswtError(f"{path}: no such directory")
    return Path(path)


if __name__ == "__main__":
    main(sys.argv[1:])
