"""Does measuring over ssh change the numbers? The same models benchmarked locally and over ssh to a device on this
same machine (a real OpenSSH server on 127.0.0.1 whose "device" Python holds only numpy and the runtimes, from
tests/support/device.py), with the same protocol settings and one thread. Rounds alternate which side goes first;
the table shows the median and the best of the rounds' p50s, with their ratios. The target: within noise (a few
percent). On a shared machine a busy neighbour can slow a whole round; the best round is what it cannot inflate.

    python benchmarks/remote_overhead.py MODEL... [--runs N] [--rounds N] [--threads N]

MODEL: .tflite or .onnx files, e.g. the quickstart's (`toolkit quickstart --output qs`, then qs/*.tflite qs/*.onnx);
default: the two tiny models in toolkit/testdata. Needs openssh-server (`make sshd`). A measurement, not a test:
it always exits 0 and prints its table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
TOOLKIT = str(Path(sys.executable).with_name("toolkit"))


def bench(model: str, args: list[str]) -> dict:
    proc = subprocess.run([TOOLKIT, "bench", model, "--format", "json", *args], capture_output=True, text=True,
                          cwd=tempfile.gettempdir())
    results = json.loads(proc.stdout)["results"] if proc.stdout.strip() else []
    if proc.returncode != 0 or not results or results[0]["status"] != "ok":
        raise SystemExit(f"{model}: {proc.stderr.strip() or results}")
    return results[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[str(ROOT / "toolkit/testdata/tiny_fp32.tflite"),
                                                       str(ROOT / "toolkit/testdata/tiny_int8.tflite")])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from device import LoopbackDevice, make_device_python, openssh_missing

    if openssh_missing():
        raise SystemExit(openssh_missing())
    with tempfile.TemporaryDirectory(prefix="remote-overhead-") as folder:
        device = LoopbackDevice(Path(folder) / "device")
        try:
            python = make_device_python(Path(folder) / "python", Path(sys.executable))
            common = ["--runs", str(args.runs), "--warmup", "50", "--threads", str(args.threads)]
            remote = ["--target", f"ssh://{device.alias}", "--ssh-config", str(device.ssh_config),
                      "--remote-python", str(python)]
            rows = []
            for model in args.models:
                local_p50, remote_p50 = [], []
                for r in range(args.rounds):
                    order = [(local_p50, []), (remote_p50, remote)]
                    for sink, extra in order if r % 2 == 0 else order[::-1]:
                        sink.append(bench(model, common + extra)["latency_us"]["p50"])
                lp, rp = statistics.median(local_p50), statistics.median(remote_p50)
                lb, rb = min(local_p50), min(remote_p50)
                rows.append((Path(model).name, lp, rp, rp / lp, lb, rb, rb / lb))
                print(f"{Path(model).name}: local {local_p50}, over ssh {remote_p50}", file=sys.stderr)
        finally:
            device.stop()
    print(f"p50 in us over {args.rounds} rounds of {args.runs} runs, {args.threads} thread(s): the median round, and "
          "the best round (what a busy neighbour cannot inflate)")
    print(f"{'model':24} {'local':>9} {'over ssh':>9} {'ratio':>6}   {'best local':>10} {'best ssh':>9} {'ratio':>6}")
    for name, lp, rp, ratio, lb, rb, best_ratio in rows:
        print(f"{name:24} {lp:9.2f} {rp:9.2f} {ratio:6.3f}   {lb:10.2f} {rb:9.2f} {best_ratio:6.3f}")


if __name__ == "__main__":
    main()
