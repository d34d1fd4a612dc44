"""Check offline log Z estimates against the truth, for a binary reward.

With r in {0, 1}, Z = 1 + (e^beta - 1) P_ref(correct), so a large sample of
the reference itself (temperature 1, no truncation) gives the true log Z of
every prompt to within its binomial interval. Draw it, score it, then set
any z artifact beside it:

    iswt sample --prompts P.jsonl --n 256 --max-new-tokens 96 --out ref.parquet
    iswt score --samples ref.parquet --reward math --out ref.scores.parquet
    python examples/log_z_truth.py --reference ref.parquet --reference-scores ref.scores.parquet \\
        --z z.parquet [--z z2.parquet ...] [--out truth.parquet]

Use the same --max-new-tokens as the proposal: a cut response is a response
of the capped reference, and the truth is that of the capped reference.
Per z it prints the mean absolute error, the share of prompts whose 95%
interval holds the truth, and the prompts it does not cover with their
flags; --out writes the per-prompt rows of every z (Parquet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iswcli import binary_truth  # noqa: E402
from iswcli.errors import IswtError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="Samples of the reference at temperature 1.")
    parser.add_argument("--reference-scores", required=True, help="Their binary scores.")
    parser.add_argument("--z", action="append", required=True, help="A z artifact to check (repeatable).")
    parser.add_argument("--out", help="Write every z's per-prompt rows here (.parquet).")
    args = parser.parse_args(argv)
    try:
        counts = binary_truth.reference_counts(args.reference, args.reference_scores)
        tables = []
        for path in args.z:
            rows = binary_truth.against_truth(path, counts)
            tables.append(rows.append_column("z", pa.array([path] * rows.num_rows)))
            _print_summary(path, rows)
    except IswtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        pq.write_table(pa.concat_tables(tables), args.out)
        print(f"wrote {args.out}")
    return 0


def _print_summary(path: str, rows: pa.Table) -> None:
    error = rows["error"].to_numpy()
    covered = rows["covered"].to_numpy()
    print(
        f"{path}: beta {rows['beta'][0].as_py():g}, {rows.num_rows} prompts, mean |error| "
        f"{np.abs(error).mean():.3f} nats (largest {np.abs(error).max():.3f}), interval covers the truth on "
        f"{int(covered.sum())} of {covered.size}"
    )
    for row in rows.filter(pa.compute.invert(rows["covered"])).to_pylist():
        print(
            f"  not covered: {row['prompt_id']}  log Z {row['log_z']:.3f} [{row['log_z_lo']:.3f}, "
            f"{row['log_z_hi']:.3f}], truth {row['log_z_true']:.3f} [{row['log_z_true_lo']:.3f}, "
            f"{row['log_z_true_hi']:.3f}]  flags {', '.join(row['flags']) or 'none'}"
        )


if __name__ == "__main__":
    sys.exit(main())
