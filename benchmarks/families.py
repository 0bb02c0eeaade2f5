"""Every model family through every conversion and quantization scheme, on this machine: what converts, what is
refused and why, and for each result its size, accuracy (or forecast error) on the real held-out split and
latency, as ratios to the fp32 file on the same runtime.

    python benchmarks/families.py [--families cnn,mlp,lstm,gru-text,transformer] [--runs N] [--out DIR]

It trains each family on its default data (the CNN on fashion-mnist when installed, else digits), makes every
artifact with the real CLI (`toolkit convert` / `toolkit quantize`, each behind the parity gate), benchmarks them
with `toolkit bench --dataset ... --threads 1 --format json`, prints the table, writes the raw records to
OUT/families.json and regenerates docs/support-matrix.md from them, including which scheme measured fastest at
equal accuracy per family and runtime (the default `toolkit quantize` picks). A measurement, not a test: it exits
0 whatever it finds. About 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLKIT = str(Path(sys.executable).with_name("toolkit"))

# family label: (train arguments, dataset)
FAMILIES = {
    "cnn": (["cnn", "--dataset", "{image}", "--epochs", "2"], "{image}"),
    "mlp": (["mlp"], "german-credit"),
    "lstm": (["lstm"], "co2"),
    "gru-text": (["lstm", "-o", "cell=gru", "--dataset", "fine-foods"], "fine-foods"),
    "transformer": (["transformer"], "fine-foods"),
}

# label: (runtime, how it is made from the family's files: (command, source, arguments))
VARIANTS = {
    "tflite fp32": ("tflite", ("convert", "keras", ["--to", "tflite"])),
    "tflite fp16": ("tflite", ("quantize", "keras", ["--scheme", "fp16"])),
    "tflite dynamic": ("tflite", ("quantize", "keras", ["--scheme", "dynamic"])),
    "tflite int8": ("tflite", ("quantize", "keras", ["--scheme", "int8"])),
    "tflite int8-float-io": ("tflite", ("quantize", "keras", ["--scheme", "int8-float-io"])),
    "tflite int16x8": ("tflite", ("quantize", "keras", ["--scheme", "int16x8"])),
    "onnx fp32": ("onnxruntime", ("convert", "keras", ["--to", "onnx"])),
    "onnx dynamic u8": ("onnxruntime", ("quantize", "onnx", ["--scheme", "dynamic"])),
    "onnx dynamic s8": ("onnxruntime", ("quantize", "onnx", ["--scheme", "dynamic", "-o", "weights=int8"])),
    "onnx int8 qdq u8s8": ("onnxruntime", ("quantize", "onnx", ["--scheme", "int8"])),
    "onnx int8 qdq s8s8": ("onnxruntime", ("quantize", "onnx", ["--scheme", "int8", "-o", "activations=int8"])),
    "onnx int8 qoperator": ("onnxruntime", ("quantize", "onnx", ["--scheme", "int8", "-o", "quant_format=qoperator"])),
    "onnx int8 from tflite": ("onnxruntime", ("convert", "tflite int8", ["--to", "onnx"])),
}
# Equal accuracy: a classifier loses at most this many points of top-1; a forecast's MAE grows at most this share.
MAX_TOP1_DROP = 1.0
MAX_MAE_GROWTH = 0.10


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([TOOLKIT, *args], capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("Error: ") if lines else "(no message)"


def image_dataset() -> str:
    from toolkit import plugins

    return "fashion-mnist" if plugins.registries().datasets.get("fashion-mnist").available().ok else "digits"


def make_family(label: str, folder: Path, image: str) -> dict:
    train_args, dataset = FAMILIES[label]
    train_args = [a.format(image=image) for a in train_args]
    dataset = dataset.format(image=image)
    out = folder / label
    t0 = time.perf_counter()
    proc = cli("train", *train_args, "--output", str(out), "--format", "json")
    if proc.returncode != 0:
        return {"family": label, "error": last_line(proc.stderr)}
    made = json.loads(proc.stdout)
    keras = out / made["manifest"]["file"]
    files: dict[str, Path] = {"keras": keras}
    rows = []
    for variant, (runtime, (command, source, args)) in VARIANTS.items():
        src = files.get(source)
        target = out / f"{keras.stem}_{variant.replace(' ', '_')}{'.onnx' if runtime == 'onnxruntime' else '.tflite'}"
        row = {"variant": variant, "runtime": runtime}
        if src is None:
            rows.append({**row, "status": "skipped", "why": f"no {source} file to start from"})
            continue
        t1 = time.perf_counter()
        proc = cli(command, str(src), *args, "--output", str(target), "--format", "json")
        row["make_s"] = round(time.perf_counter() - t1, 1)
        if proc.returncode != 0:
            rows.append({**row, "status": "refused", "exit": proc.returncode, "why": last_line(proc.stderr)})
            continue
        manifest = json.loads(proc.stdout)["manifest"]
        files[variant] = target
        if variant == "onnx fp32":
            files["onnx"] = target
        notes = [ln.removeprefix("Note: ") for ln in proc.stderr.splitlines() if ln.startswith("Note: ")
                 and ("unrolled" in ln or "int8 kernels" in ln)]
        rows.append({**row, "status": "ok", "file": target.name, "precision": manifest["precision"],
                     "size": target.stat().st_size, "parity": manifest["metrics"].get("parity", {}),
                     "notes": notes})
    return {"family": label, "dataset": dataset, "train": made["metrics"], "keras": str(keras), "rows": rows,
            "files": {k: str(v) for k, v in files.items()}, "make_s": round(time.perf_counter() - t0, 1)}


def bench(family: dict, runs: int) -> None:
    for runtime in ("tflite", "onnxruntime"):
        rows = [r for r in family["rows"] if r["status"] == "ok" and r["runtime"] == runtime]
        if not rows:
            continue
        folder = Path(family["keras"]).parent
        proc = cli("bench", *(str(folder / r["file"]) for r in rows), "--backend", runtime, "--dataset",
                   family["dataset"], "--threads", "1", "--runs", str(runs), "--format", "json")
        try:
            records = json.loads(proc.stdout)
        except json.JSONDecodeError:
            for r in rows:
                r["bench_error"] = last_line(proc.stderr)
            continue
        by_file = {Path(rec["model"]).name: rec for rec in records.get("results", [])}
        for r in rows:
            rec = by_file.get(r["file"])
            if rec is None:
                r["bench_error"] = next((f.get("error", "") for f in records.get("failures", [])
                                         if Path(f.get("model", "")).name == r["file"]), "no record")
                continue
            r["p50_us"] = rec["latency_us"]["p50"]
            r["evaluation"] = rec.get("evaluation") or {}


def metric(row: dict) -> tuple[str, float] | None:
    ev = row.get("evaluation") or {}
    if ev.get("top1") is not None:
        return "top1", ev["top1"] * 100
    if ev.get("mae") is not None:
        return "mae", ev["mae"]
    return None


def ratios(family: dict) -> None:
    """Size, metric delta and latency ratio of each row to the fp32 file on the same runtime."""
    base = {r["runtime"]: r for r in family["rows"] if r["variant"] in ("tflite fp32", "onnx fp32")
            and r["status"] == "ok"}
    for r in family["rows"]:
        b = base.get(r["runtime"])
        if r["status"] != "ok" or b is None:
            continue
        r["size_ratio"] = round(r["size"] / b["size"], 3)
        if r.get("p50_us") and b.get("p50_us"):
            r["latency_ratio"] = round(r["p50_us"] / b["p50_us"], 3)
        m, mb = metric(r), metric(b)
        if m and mb:
            r["metric"] = m[0]
            r["metric_value"] = round(m[1], 4)
            r["metric_delta"] = round(m[1] - mb[1], 4)
            r["equal_accuracy"] = (mb[1] - m[1] <= MAX_TOP1_DROP if m[0] == "top1"
                                   else m[1] <= mb[1] * (1 + MAX_MAE_GROWTH))


# Among quantized files within TIE of the fastest, the first of these wins: full integer before weights-only,
# QDQ before QOperator (QDQ is what CUDA and TensorRT take too).
PREFERENCE = ("tflite int8", "tflite int8-float-io", "onnx int8 qdq u8s8", "onnx int8 qoperator", "tflite dynamic",
              "onnx dynamic u8", "onnx dynamic s8", "onnx int8 qdq s8s8", "tflite fp16", "tflite int16x8")
TIE = 0.05


def fastest(family: dict, runtime: str) -> dict | None:
    """The quickest file at equal accuracy on `runtime`, fp32 included."""
    ok = [r for r in family["rows"] if r["runtime"] == runtime and r.get("equal_accuracy") and r.get("p50_us")]
    return min(ok, key=lambda r: r["p50_us"]) if ok else None


def default_scheme(family: dict, runtime: str) -> dict | None:
    """What `toolkit quantize` should do without --scheme: the fastest quantized file at equal accuracy (a
    quantize scheme, not a conversion), ties within 5% going to PREFERENCE's order."""
    ok = [r for r in family["rows"] if r["runtime"] == runtime and r.get("equal_accuracy") and r.get("p50_us")
          and r["variant"] in PREFERENCE]
    if not ok:
        return None
    best = min(r["p50_us"] for r in ok)
    near = [r for r in ok if r["p50_us"] <= best * (1 + TIE)]
    return min(near, key=lambda r: PREFERENCE.index(r["variant"]))


def table_lines(families: list[dict]) -> list[str]:
    lines = ["| family | variant | result | size vs fp32 | accuracy / error (delta) | p50 | latency vs fp32 |",
             "|---|---|---|---:|---:|---:|---:|"]
    for fam in families:
        if "error" in fam:
            lines.append(f"| {fam['family']} | (training) | failed: {fam['error']} | | | | |")
            continue
        for r in fam["rows"]:
            if r["status"] != "ok":
                lines.append(f"| {fam['family']} | {r['variant']} | {r['status']}: {r['why'][:160]} | | | | |")
                continue
            if "bench_error" in r:
                lines.append(f"| {fam['family']} | {r['variant']} | made; bench failed: {r['bench_error'][:120]} "
                             "| | | | |")
                continue
            m = ""
            if "metric" in r:
                value = f"{r['metric_value']:.2f}%" if r["metric"] == "top1" else f"MAE {r['metric_value']:.3f}"
                delta = f"{r['metric_delta']:+.2f}" + (" pt" if r["metric"] == "top1" else "")
                m = f"{value} ({delta})"
            lines.append(f"| {fam['family']} | {r['variant']} | converts | {r.get('size_ratio', 0):.2f} | {m} | "
                         f"{r.get('p50_us', 0):.1f} us | {r.get('latency_ratio', 0):.2f} |")
    return lines


def defaults_lines(families: list[dict]) -> list[str]:
    lines = ["| family | runtime | fastest at equal accuracy | quantize default | its p50 | vs fp32 | size vs fp32 |",
             "|---|---|---|---|---:|---:|---:|"]
    for fam in families:
        for runtime in ("tflite", "onnxruntime"):
            best = fastest(fam, runtime) if "rows" in fam else None
            chosen = default_scheme(fam, runtime) if "rows" in fam else None
            if best and chosen:
                lines.append(f"| {fam['family']} | {runtime} | {best['variant']} | {chosen['variant']} | "
                             f"{chosen['p50_us']:.1f} us | {chosen.get('latency_ratio', 1):.2f} | "
                             f"{chosen.get('size_ratio', 1):.2f} |")
    return lines


def environment() -> str:
    from toolkit.api import host_environment

    env = host_environment()
    return (f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, {env.get('os', '?')}, "
            f"flags {','.join(env.get('isa', []) or env.get('isa_flags', []) or [])}")


def write_docs(families: list[dict], runs: int) -> Path:
    doc = ROOT / "docs" / "support-matrix.md"
    text = "\n".join([
        "# Support matrix: family x scheme x runtime",
        "",
        "Generated by `python benchmarks/families.py` (do not edit by hand) on "
        f"{datetime.date.today().isoformat()}: {environment()}.",
        "",
        "Each family was trained on its real default data; each file was made by the CLI behind the parity gate "
        "(a file that changes the answers is refused, and shows here as refused with the gate's numbers), then "
        f"benchmarked with `toolkit bench --dataset ... --threads 1 --runs {runs}` at batch 1. Accuracy is top-1 "
        "on the dataset's held-out split (MAE in ppm for the CO2 forecast); size, accuracy delta and latency are "
        "against the fp32 file on the same runtime. Speed depends on the CPU: int8 kernels that win on a CPU "
        "with VNNI can lose on one without.",
        "",
        *table_lines(families),
        "",
        "## Fastest at equal accuracy",
        "",
        f"Equal accuracy: at most {MAX_TOP1_DROP} point of top-1 lost, or at most {MAX_MAE_GROWTH:.0%} more "
        "forecast error. The quantize default is the fastest quantized file at equal accuracy; within "
        f"{TIE:.0%} of it, full integer wins over weights-only and QDQ over QOperator. Where it is slower than "
        "fp32 (vs fp32 above 1), quantizing buys size, not speed, on this machine, and `toolkit quantize` says so. "
        "The families' `recommended_quantization` (plugins/toolkit_keras/models.py) holds these choices.",
        "",
        *defaults_lines(families),
        "",
    ])
    doc.write_text(text)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="keep the files and families.json here")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/support-matrix.md")
    parser.add_argument("--report", type=Path, metavar="FAMILIES_JSON",
                        help="measure nothing: print and write the docs from an earlier run's families.json")
    args = parser.parse_args()
    if args.report:
        families = json.loads(args.report.read_text())
        print("\n".join(table_lines(families) + [""] + defaults_lines(families)))
        if not args.no_docs:
            print(f"\nwrote {write_docs(families, args.runs)}")
        return 0
    image = image_dataset()
    folder = args.out or Path(tempfile.mkdtemp(prefix="toolkit-families-"))
    folder.mkdir(parents=True, exist_ok=True)
    families = []
    for label in args.families.split(","):
        print(f"== {label}: training and making every variant", file=sys.stderr, flush=True)
        fam = make_family(label, folder, image)
        if "rows" in fam:
            print(f"== {label}: benchmarking", file=sys.stderr, flush=True)
            bench(fam, args.runs)
            ratios(fam)
        families.append(fam)
    (folder / "families.json").write_text(json.dumps(families, indent=2, default=str))
    print("\n".join(table_lines(families)))
    print()
    print("\n".join(defaults_lines(families)))
    if not args.no_docs:
        print(f"\nwrote {write_docs(families, args.runs)} and {folder / 'families.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
