"""Kill and race `toolkit convert` / `toolkit quantize`, and check that nothing unverified or left over remains.

    .venv/bin/python tools/stress.py kill --signal KILL --count 20 --workdir /tmp/stress
    .venv/bin/python tools/stress.py race --rounds 10 --workers 4 --workdir /tmp/race

`kill` signals the CLI process alone at a random moment of its run, then checks, one second later: no process the
run started is alive, no temporary file is left (in the output folder or in the run's own TMPDIR), and any file
under its final name has a manifest with its sha256 and a passed check; then it reruns the command, which must
succeed. `race` starts several converts into one output at once and checks that the manifest on disk describes
the file on disk and that every exit code is true. Both print a table and exit 1 on any violation. They need a
trained model: the first run trains one (a tiny CNN on digits) into the work folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLKIT = str(Path(sys.executable).with_name("toolkit"))
COMMANDS = {
    "convert": lambda d: [TOOLKIT, "convert", str(d / "cnn.keras"), "--to", "onnx", "--output", str(d / "cnn.onnx")],
    "quantize": lambda d: [TOOLKIT, "quantize", str(d / "src.onnx"), "--output", str(d / "cnn_int8.onnx")],
}
KEPT = {"cnn.keras", "cnn.keras.manifest.json", "metrics.json", "src.onnx", "src.onnx.manifest.json"}


def prepare(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "cnn.keras").exists():
        subprocess.run([TOOLKIT, "train", "cnn", "--dataset", "digits", "--epochs", "1", "--output", str(workdir)],
                       check=True, capture_output=True)
    if not (workdir / "src.onnx").exists():
        subprocess.run(COMMANDS["convert"](workdir)[:-1] + [str(workdir / "src.onnx")], check=True,
                       capture_output=True)


def processes_of(run: str) -> list[int]:
    """Processes of one CLI run: everything it starts (children, the janitor, tf2onnx) inherits its environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"TOOLKIT_STRESS_RUN={run}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def check_outputs(workdir: Path) -> list[str]:
    """Problems with what the folder holds: leftovers, or a file under a final name that was not verified."""
    problems = []
    for p in workdir.iterdir():
        if p.name in KEPT:
            continue
        if p.suffix == ".onnx" and p.name in ("cnn.onnx", "cnn_int8.onnx"):
            mpath = p.with_name(p.name + ".manifest.json")
            if not mpath.exists():
                problems.append(f"{p.name} has no manifest")
                continue
            manifest = json.loads(mpath.read_text())
            if manifest["sha256"] != hashlib.sha256(p.read_bytes()).hexdigest():
                problems.append(f"{p.name}'s manifest describes another file")
            if not manifest.get("metrics", {}).get("parity", {}).get("passed"):
                problems.append(f"{p.name} has no passed check")
        elif p.name.endswith(".manifest.json") and p.name[: -len(".manifest.json")] in ("cnn.onnx", "cnn_int8.onnx"):
            if not p.with_name(p.name[: -len(".manifest.json")]).exists():
                problems.append(f"{p.name} without its model")
        else:
            problems.append(f"left over: {p.name}")
    return problems


def kill(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    prepare(workdir)
    rng = random.Random(args.seed)
    sig = getattr(signal, f"SIG{args.signal}")
    durations = {}
    for name in args.commands:  # how long an undisturbed run takes, to spread the kills over it
        start = time.monotonic()
        subprocess.run(COMMANDS[name](workdir), check=True, capture_output=True)
        durations[name] = time.monotonic() - start
    rows, failures = [], 0
    for i in range(args.count):
        name = args.commands[i % len(args.commands)]
        delay = rng.uniform(0.1, durations[name])
        tmp = Path(tempfile.mkdtemp(prefix="stress-tmp-"))
        run = f"{os.getpid()}-{i}"
        env = dict(os.environ, TMPDIR=str(tmp), TOOLKIT_STRESS_RUN=run)
        proc = subprocess.Popen(COMMANDS[name](workdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait()
        exited_s = time.monotonic() - sent
        time.sleep(1.0)
        problems = [f"process {p} still running 1 s later" for p in processes_of(run)]
        problems += check_outputs(workdir)
        problems += [f"left in TMPDIR: {p.name}" for p in tmp.iterdir()]
        stderr = proc.stderr.read().decode() if proc.stderr else ""  # type: ignore[union-attr]
        if sig == signal.SIGINT and code != 130 and code != 0:
            problems.append(f"exit code {code}, not 130: {stderr.strip()[-200:]}")
        rerun = subprocess.run(COMMANDS[name](workdir), capture_output=True, text=True)
        if rerun.returncode != 0:
            problems.append(f"rerun failed: {rerun.stderr.strip()[-200:]}")
        problems += check_outputs(workdir)
        failures += bool(problems)
        rows.append((i + 1, name, f"{delay:.2f}", code, f"{exited_s:.2f}", "; ".join(problems) or "ok"))
        for p in tmp.iterdir():
            subprocess.run(["rm", "-rf", str(p)])
        tmp.rmdir()
    print(f"{'#':>3} {'command':<9} {'after s':>7} {'exit':>5} {'stop s':>6}  result")
    for r in rows:
        print(f"{r[0]:>3} {r[1]:<9} {r[2]:>7} {r[3]:>5} {r[4]:>6}  {r[5]}")
    print(f"{args.count} x SIG{args.signal}: {failures} with a problem; slowest stop "
          f"{max(float(r[4]) for r in rows):.2f} s")
    return 1 if failures else 0


def race(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    prepare(workdir)
    failures = 0
    for round_ in range(1, args.rounds + 1):
        procs = [subprocess.Popen(COMMANDS["convert"](workdir) + ["--format", "json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(args.workers)]
        outs = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        problems = check_outputs(workdir)
        on_disk = json.loads((workdir / "cnn.onnx.manifest.json").read_text())["sha256"]
        reported = set()
        for code, out, err in outs:
            if code == 0:
                reported.add(json.loads(out)["manifest"]["sha256"])
            else:
                problems.append(f"exit {code}: {err.strip()[-200:]}")
        if on_disk not in reported:
            problems.append("the file on disk is none of the files the runs reported")
        failures += bool(problems)
        print(f"round {round_}: exit codes {[o[0] for o in outs]}, {len(reported)} distinct sha256 reported, "
              f"on disk {on_disk[:12]}: {'; '.join(problems) or 'ok'}")
    print(f"{args.rounds} rounds x {args.workers} concurrent converts: {failures} with a problem")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kill")
    k.add_argument("--signal", default="KILL", choices=["KILL", "INT", "TERM", "HUP"])
    k.add_argument("--count", type=int, default=20)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--commands", nargs="+", default=["convert", "quantize"], choices=sorted(COMMANDS))
    k.add_argument("--workdir", default="/tmp/toolkit-stress")
    r = sub.add_parser("race")
    r.add_argument("--rounds", type=int, default=10)
    r.add_argument("--workers", type=int, default=4)
    r.add_argument("--workdir", default="/tmp/toolkit-race")
    args = parser.parse_args()
    return kill(args) if args.what == "kill" else race(args)


if __name__ == "__main__":
    sys.exit(main())
