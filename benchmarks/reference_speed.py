"""How fast the reference backend is next to ONNX Runtime: the latency ratio on the quickstart's CNN, fp32 and
int8 (QDQ), at batch 1 and 32, one thread each, with onnx's own ReferenceEvaluator alongside (on the graph
converted to opset 19 where it is older: the evaluator has no DequantizeLinear before 19). Target: <= 5x.

Every measurement runs in a fresh interpreter. The machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE settings
(../shared/docs/stack.md: they slow current numpy's OpenBLAS) are unset for the measuring command alone in the
main table; a second table measures the reference backend again under them, to show no pathological case,
and names the BLAS kernel that ran (threadpoolctl).

    toolkit quickstart --output quickstart-out        # makes cnn.onnx and cnn_int8.onnx
    python benchmarks/reference_speed.py [--models quickstart-out] [--runs 300] [--seconds 2]

A measurement, not a test: it prints its tables and verdict and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TARGET_RATIO = 5.0
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, numpy as np
from toolkit.benchmark.protocol import latency_summary, time_calls
runtime, path, batch, runs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
x = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
blas = []
if runtime == "onnxruntime":
    import onnxruntime as ort
    options = ort.SessionOptions(); options.intra_op_num_threads = 1; options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    call = lambda: session.run(None, {name: x})
elif runtime == "reference":
    from toolkit.artifact import Artifact
    from toolkit.interfaces import BackendOptions
    from toolkit_reference.backend import ReferenceBackend
    session = ReferenceBackend().load(Artifact.open(path), BackendOptions(threads=1))
    call = session.bench_callable({session.input_specs[0].name: x})
    blas = session.describe()["blas"]
else:  # onnx's ReferenceEvaluator: slow, so fewer runs
    from onnx.reference import ReferenceEvaluator
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    import onnx
    from onnx import version_converter
    model = onnx.load(path)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 19:  # onnx.reference has no DequantizeLinear before opset 19: the same graph, converted up
        model = version_converter.convert_version(model, 19)
    evaluator = ReferenceEvaluator(model)
    name = evaluator.input_names[0]
    call = lambda: evaluator.run(None, {name: x})
    runs, seconds = max(10, runs // 30), min(seconds, 1.0)
first, times = time_calls(call, runs=runs, warmup=10, min_seconds=seconds, warmup_seconds=0.3)
print(json.dumps({"p50": latency_summary(times)["p50"], "runs": len(times), "blas": blas}))
"""


def measure(runtime: str, path: Path, batch: int, runs: int, seconds: float, blas_env: bool) -> dict:
    env = dict(os.environ)
    if not blas_env:
        for name in BLAS_VARIABLES:
            env.pop(name, None)
    # Safe-path mode and an explicit path to the plugins: the measuring process imports nothing from the cwd.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    done = subprocess.run([sys.executable, "-P", "-c", CHILD, runtime, str(path), str(batch), str(runs), str(seconds)],
                          env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def blas_kernel(result: dict) -> str:
    """The BLAS library, version, kernel and threads threadpoolctl saw in the measuring process."""
    return ", ".join(f"{b['internal_api']} {b.get('version')} {b.get('architecture')} x{b['num_threads']}"
                     for b in result.get("blas", [])) or "-"


def fmt_us(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("quickstart-out"),
                        help="folder with the quickstart's cnn.onnx and cnn_int8.onnx")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=2.0, help="least timing per measurement")
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args()
    models = {"fp32": args.models / "cnn.onnx", "int8": args.models / "cnn_int8.onnx"}
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run `toolkit quickstart --output {args.models}` first")
    batches = [int(b) for b in args.batches.split(",")]

    print(f"reference backend vs ONNX Runtime, 1 thread, {', '.join(BLAS_VARIABLES)} unset (p50 per call)\n")
    print("| model | batch | onnxruntime | reference | ratio | onnx.reference | ratio | BLAS kernel |")
    print("|---|---|---|---|---|---|---|---|")
    worst, rows = 0.0, []
    for precision, path in models.items():
        for batch in batches:
            ort = measure("onnxruntime", path, batch, args.runs, args.seconds, blas_env=False)
            ref = measure("reference", path, batch, args.runs, args.seconds, blas_env=False)
            evaluator = measure("onnx.reference", path, batch, args.runs, args.seconds, blas_env=False)
            ratio = ref["p50"] / ort["p50"] if "p50" in ref and "p50" in ort else None
            other = evaluator["p50"] / ort["p50"] if "p50" in evaluator and "p50" in ort else None
            worst = max(worst, ratio or float("inf"))
            rows.append((precision, batch, ort))
            print(f"| cnn {precision} | {batch} | {fmt_us(ort.get('p50'))} | {fmt_us(ref.get('p50'))} | "
                  f"{'-' if ratio is None else f'{ratio:.1f}x'} | {fmt_us(evaluator.get('p50'))} | "
                  f"{'-' if other is None else f'{other:.0f}x'} | {blas_kernel(ref)} |")
            for side, result in (("onnxruntime", ort), ("reference", ref), ("onnx.reference", evaluator)):
                if "error" in result:
                    print(f"  ({side} failed: {result['error']})")
    settings = ", ".join(f"{n}={os.environ[n]}" for n in BLAS_VARIABLES if n in os.environ) or "none set here"
    print(f"\nreference backend under this machine's BLAS settings ({settings})\n")
    print("| model | batch | reference | ratio to onnxruntime above | BLAS kernel |")
    print("|---|---|---|---|---|")
    for precision, batch, ort in rows:
        ref = measure("reference", models[precision], batch, args.runs, args.seconds, blas_env=True)
        ratio = ref["p50"] / ort["p50"] if "p50" in ref and "p50" in ort else None
        print(f"| cnn {precision} | {batch} | {fmt_us(ref.get('p50'))} | "
              f"{'-' if ratio is None else f'{ratio:.1f}x'} | {blas_kernel(ref)} |")
    verdict = "PASS" if worst <= TARGET_RATIO else "FAIL"
    print(f"\n{verdict}: the worst reference/onnxruntime ratio is {worst:.1f}x (target <= {TARGET_RATIO:.0f}x)")


if __name__ == "__main__":
    main()
