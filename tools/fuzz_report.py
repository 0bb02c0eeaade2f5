"""Fuzz the toolkit with N mutated .tflite/.onnx models and print what happened to them, by outcome class.

    .venv/bin/python tools/fuzz_report.py --count 500 --seed 1 [--cli 20] [--keep DIR]

Each model goes through the CLI process's code (format detection, readers, Artifact.open, the benchmark's plan)
and then, on every built-in backend that accepted it, through a benchmark child's measure(); with --cli K, K of
them also through the real `toolkit bench` command. The mutations and the harness are the test suite's
(tests/support/fuzz.py, fuzz_harness.py). Exits 1 when any outcome is a DEFECT, and lists them.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

SUPPORT = Path(__file__).resolve().parents[1] / "tests" / "support"
sys.path.insert(0, str(SUPPORT))
# The benchmark child imports the harness (and the CLI runs take test plugins) from the same folder.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))

import fuzz  # noqa: E402
import fuzz_harness as harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="mutated models to make (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="case i of seed s is always the same file")
    parser.add_argument("--formats", default="onnx,tflite", help="comma-separated: onnx, tflite")
    parser.add_argument("--cli", type=int, default=0, metavar="K", help="also run K of them through `toolkit bench`")
    parser.add_argument("--case-timeout", type=float, default=harness.CASE_TIMEOUT_S,
                        help="seconds a benchmark may take before it counts as a hang")
    parser.add_argument("--keep", type=Path, help="write the models here and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="toolkit-fuzz-"))
    try:
        start = time.monotonic()
        cases = fuzz.make_cases(folder, args.count, args.seed, tuple(args.formats.split(",")))
        parent, runtime = harness.run_cases([c.path for c in cases], case_timeout_s=args.case_timeout)
        sample = random.Random(args.seed).sample(cases, min(args.cli, len(cases)))
        cli = [harness.cli_outcome(c.path) for c in sample]
        elapsed = time.monotonic() - start
        report(cases, parent, runtime, cli, args, elapsed)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if any(o.defect for o in [*parent, *runtime, *cli]) else 0


def report(cases: list[fuzz.Case], parent: list[harness.Outcome], runtime: list[harness.Outcome],
           cli: list[harness.Outcome], args: argparse.Namespace, elapsed: float) -> None:
    fmt_of = {str(c.path): c.fmt for c in cases}
    columns: dict[str, list[harness.Outcome]] = {}
    for fmt in sorted({c.fmt for c in cases}):
        columns[f"parent {fmt}"] = [o for o in parent if fmt_of[o.model] == fmt]
    by_backend = collections.defaultdict(list)
    for o in runtime:
        by_backend[o.side].append(o)
    columns.update({f"child {b}": v for b, v in sorted(by_backend.items())})
    columns["all pairs"] = runtime
    if cli:
        columns["toolkit bench"] = cli
    print(f"{len(cases)} mutated models (seed {args.seed}), {len(runtime)} (model, backend) pairs in children"
          f"{f', {len(cli)} CLI runs' if cli else ''}, {elapsed:.0f} s\n")
    print(harness.table(columns))
    found = harness.defects([*parent, *runtime, *cli])
    mutation = {str(c.path): c.mutation for c in cases}
    print(f"\n{len(found)} defects" + (":" if found else ""))
    for o in [*parent, *runtime, *cli]:
        if o.defect:
            print(f"  {Path(o.model).name} on {o.side}: {o.detail}\n    mutation: {mutation[o.model]}")


if __name__ == "__main__":
    sys.exit(main())
