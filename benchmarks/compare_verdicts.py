"""What `toolkit compare` says about real runs: two back-to-back runs of one benchmark, and a third made slower by a
busy process on the same pinned core.

For each model (an MLP and a small CNN, written with onnx.helper, random weights, on ONNX Runtime), this runs
`toolkit bench MODEL --threads 1 --pin CORE --processes P --save` three times into a fresh history:

1. run A;
2. run B, straight after (the same benchmark: the verdict should be "no change", exit 0);
3. run C, with `while True: pass` pinned to the same core (the core is shared, so every call waits its turn about
   half the time: the verdict should be "regression", exit 1);

then prints `toolkit compare A B` and `toolkit compare A C` side by side: the p50 and mean changes with their 95 %
intervals, the verdicts and the exit codes.

    python benchmarks/compare_verdicts.py [--core N] [--min-seconds S] [--processes P] [--threshold 5%]

A measurement, not a test: it always exits 0. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLKIT = str(Path(sys.executable).with_name("toolkit"))


def make_models(folder: Path) -> dict[str, Path]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    def save(name: str, nodes, x_shape, inits) -> Path:
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = folder / f"{name}.onnx"
        onnx.save(model, path)
        return path

    mlp = save("mlp", [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                       helper.make_node("MatMul", ["r", "w2"], ["y"])], ["N", 784],
               [weight("w1", 784, 128), weight("w2", 128, 10)])
    cnn = save("cnn", [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
                       helper.make_node("Relu", ["c1"], ["r1"]),
                       helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
                       helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
                       helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
                       helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "w3"], ["y"])],
               ["N", 1, 28, 28], [weight("w1", 32, 1, 3, 3), weight("w2", 64, 32, 3, 3), weight("w3", 64, 10)])
    return {"mlp": mlp, "cnn": cnn}


def bench(model: Path, history: Path, core: int, min_seconds: float, processes: int) -> int:
    proc = subprocess.run([TOOLKIT, "bench", str(model), "--threads", "1", "--pin", str(core), "--min-seconds",
                           str(min_seconds), "--processes", str(processes), "--save", "--history", str(history),
                           "--format", "json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)["run_id"]


def compare(a: int, b: int, history: Path, threshold: str) -> tuple[dict, int]:
    proc = subprocess.run([TOOLKIT, "compare", str(a), str(b), "--history", str(history), "--threshold", threshold,
                           "--format", "json"], capture_output=True, text=True)
    return json.loads(proc.stdout)["pairs"][0], proc.returncode


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--threshold", default="5%")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = make_models(folder)
        rows = []
        for name, model in models.items():
            history = folder / f"{name}.sqlite"
            a = bench(model, history, args.core, args.min_seconds, args.processes)
            b = bench(model, history, args.core, args.min_seconds, args.processes)
            busy = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{args.core}}})\n"
                                                           "while True: pass"])
            try:
                time.sleep(0.2)
                c = bench(model, history, args.core, args.min_seconds, args.processes)
            finally:
                busy.kill()
                busy.wait()
            for label, other in (("back-to-back", b), ("busy core", c)):
                pair, code = compare(a, other, history, args.threshold)
                rows.append([name, label, f"{pair['p50_a_us']:.1f} -> {pair['p50_b_us']:.1f}",
                             f"{pct(pair['change'])} [{pct(pair['ci_low'])}, {pct(pair['ci_high'])}]",
                             f"{pair['mean_a_us']:.1f} -> {pair['mean_b_us']:.1f}",
                             f"{pct(pair['mean_change'])} [{pct(pair['mean_ci_low'])}, {pct(pair['mean_ci_high'])}]",
                             pair["verdict"], str(code)])
    header = ["model", "runs", "p50 us", "p50 change [95% CI]", "mean us", "mean change [95% CI]", "verdict", "exit"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"\nonnxruntime, 1 thread, pinned to CPU {args.core}, --min-seconds {args.min_seconds}, --processes "
          f"{args.processes}, threshold "
          f"{args.threshold}. Expected: back-to-back 'no change' (exit 0), busy core 'regression' (exit 1).")


if __name__ == "__main__":
    main()
