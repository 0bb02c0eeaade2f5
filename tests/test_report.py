"""`toolkit report`: saved runs as one self-contained HTML file with plots, or as Markdown.

The runs are built from records with realistic measurements (the protocol's own summarise() over seeded
timings), saved in a real history, and reported by the real CLI in this process. The browser tests open the
report in headless Chromium and check that every plot decodes and nothing reaches the console.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from browser import needs_chromium, open_in_chromium  # tests/support
from toolkit.benchmark.protocol import summarise
from toolkit.cli import cli
from toolkit.history import open_history
from toolkit.records import BenchFailure, BenchRecord
from toolkit.report import NO_SWEEP_NOTE, pareto_front

EVIL = "<script>alert('$1')<script><img src=x onerror=console.error(1)>.onnx"  # no '/': it is a file name
HOST_ENV = {"cpu": "AMD EPYC 7B13 64-Core Processor", "arch": "x86_64", "cores": 2, "toolkit": "0.2.0"}
PI_ENV = {"cpu": "Cortex-A72", "arch": "aarch64", "cores": 4, "toolkit": "0.2.0"}


def record(model: str, backend: str, p50_us: float, *, batch: int = 1, top1: float | None = None,
           size: int = 370_000, spread: float = 0.04, seed: int = 0, precision: str = "fp32",
           target: str | None = None, runs: int = 600) -> BenchRecord:
    """A record as the protocol makes it, from seeded timings: lognormal around p50 with a few slow outliers."""
    rng = np.random.default_rng(seed)
    us = p50_us * rng.lognormal(0.0, spread, runs)
    us[rng.random(runs) < 0.01] *= 3  # the odd preempted run
    times_ns = [int(t * 1000) for t in us]
    measured = summarise(int(us[0] * 5000), times_ns, batch)
    macs = 2_500_000
    return BenchRecord(
        model=model, backend=backend, format=Path(model).suffix.lstrip("."), precision=precision, batch=batch,
        runs=measured["runs"], warmup=10, latency_us=measured["latency_us"], stability=measured["stability"],
        unstable=measured["unstable"], throughput_per_s=measured["throughput_per_s"],
        samples_us=measured["samples_us"], first_run_ms=measured["first_run_ms"], threads=2,
        provider={"providers": ["CPUExecutionProvider"]} if backend == "onnxruntime" else {"delegate": "XNNPACK"},
        inputs={"input": [batch, 28, 28, 1]}, size_bytes=size, task="classification",
        cost={"macs": macs, "flops": 2 * macs, "gflops_per_s": round(2 * macs * batch / p50_us / 1e3, 3)},
        evaluation={"dataset": "fashion-mnist", "samples": 10_000, "top1": top1} if top1 is not None else None,
        target=target, runner="ssh" if target else "local", environment=PI_ENV if target else HOST_ENV)


def failure(model: str, backend: str, error: str) -> BenchFailure:
    return BenchFailure(model=model, backend=backend, error=error)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """Four runs: 1 only failures; 2 no evaluation and no batch sweep; 3 a baseline; 4 the full run (evaluations,
    a batch sweep, an unstable record, a device target, a hostile model name and a failure)."""
    path = tmp_path_factory.mktemp("history") / "h.sqlite"
    with open_history(path) as h:
        h.save_run([failure("out/cnn.keras", "keras", "cnn.keras on keras: keras is not installed")],
                   command="toolkit bench cnn.keras")
        h.save_run([record("a.tflite", "tflite", 100, size=400_000, seed=1),
                    record("a_int8.tflite", "tflite", 150, size=100_000, seed=2, precision="int8"),
                    record("b.onnx", "onnxruntime", 120, size=500_000, seed=3),
                    record("c_int8.onnx", "onnxruntime", 300, size=120_000, seed=4, precision="int8")],
                   command="toolkit bench a.tflite a_int8.tflite b.onnx c_int8.onnx --save")
        h.save_run([record("out/cnn.onnx", "onnxruntime", 95, top1=0.8806, seed=5),
                    record("out/cnn_int8.onnx", "onnxruntime", 75, top1=0.8611, size=117_000, seed=6,
                           precision="int8")],
                   command="toolkit bench out/cnn.onnx out/cnn_int8.onnx --dataset fashion-mnist --save")
        h.save_run([record("out/cnn.onnx", "onnxruntime", 80, top1=0.8806, seed=7),
                    record("out/cnn.onnx", "onnxruntime", 420, batch=8, top1=0.8806, seed=8),
                    record("out/cnn.onnx", "onnxruntime", 1500, batch=32, top1=0.8806, seed=9),
                    record("out/cnn_int8.onnx", "onnxruntime", 70, top1=0.8611, size=117_000, seed=10,
                           precision="int8", spread=0.3),
                    record("out/cnn_int8.tflite", "tflite", 50, top1=0.8701, size=104_000, seed=11,
                           precision="int8"),
                    record("out/cnn_fp16.tflite", "tflite", 150, top1=0.8912, size=190_000, seed=12,
                           precision="fp16"),
                    record("out/cnn_int8.tflite", "tflite", 400, top1=0.8701, size=104_000, seed=13,
                           precision="int8", target="raspberry-pi-4"),
                    record(f"out/{EVIL}", "onnxruntime", 2300, top1=0.80, seed=14),
                    failure("out/cnn.keras", "keras", "cnn.keras on keras: keras <b>is</b> not installed")],
                   command="toolkit bench out/*.onnx out/*.tflite --batch 1,8,32 --dataset fashion-mnist --save",
                   label="abc1234")
    return path


def run_cli(*args: str) -> SimpleNamespace:
    """The CLI in this process: the same exit code, stdout and stderr as the console script."""
    result = CliRunner().invoke(cli, list(args))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


class Page(HTMLParser):
    """What a test looks for in a report: the plot images, the notes in place of plots, the Pareto front,
    the table's rows and every script or external resource."""

    def __init__(self, text: str):
        super().__init__()
        self.images: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.front: list[str] = []
        self.rows: list[list[str]] = []
        self.scripts = 0
        self.external: list[str] = []
        self._in: str | None = None
        self._text = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag == "img" and "plot" in (a.get("class") or "").split():
            self.images[a["data-plot"]] = a["src"]
        elif tag == "p" and a.get("data-plot"):
            self._in, self._text, self._note = "note", "", a["data-plot"]
        elif tag == "span" and a.get("class") == "front":
            self._in, self._text = "front", ""
        elif tag == "tr" and self._in is None:
            self.rows.append([])
        elif tag == "td":
            self._in, self._text = "td", ""
        elif tag == "b" and self._in == "front":
            self._text += "\0"

    def handle_endtag(self, tag):
        if tag == "p" and self._in == "note":
            self.notes[self._note] = self._text
            self._in = None
        elif tag == "span" and self._in == "front":
            self.front = [t.strip(", ") for t in self._text.split("\0") if t.strip(", ")]
            self._in = None
        elif tag == "td" and self._in == "td":
            self.rows[-1].append(self._text)
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._text += data


def png_size(data_uri: str) -> tuple[int, int]:
    """Width and height from a data: URI's PNG header, checked: signature, IHDR with its CRC, IEND at the end."""
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    png = base64.b64decode(data_uri[len(prefix):], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", png[29:33])[0] == zlib.crc32(png[12:29])
    assert png[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module")
def report(history, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_cli("report", "latest~1", "latest", "--history", str(history), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and f"Wrote {out} (html: 10 record(s) from run(s) 3, 4)" in proc.stderr
    return out, out.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- Pareto front
def test_the_pareto_front_keeps_only_what_nothing_beats():
    points = [(100, 0.88), (50, 0.87), (150, 0.89), (120, 0.88), (60, 0.86), (50, 0.87)]
    assert pareto_front(points) == [1, 5, 0, 2]  # equal points both stay; (120, .88) and (60, .86) are beaten
    # Lower is better on both axes (file size against latency).
    assert pareto_front([(100, 400), (150, 100), (120, 500), (300, 120)], higher_y_is_better=False) == [0, 1]
    assert pareto_front([]) == []


# ---------------------------------------------------------------------------------------------- HTML
def test_the_html_report_is_one_file_with_three_real_plots(report):
    _, text = report
    page = Page(text)
    assert set(page.images) == {"latency", "tradeoff", "batch"} and not page.notes
    for name, uri in page.images.items():
        width, height = png_size(uri)
        assert width > 300 and height > 200, name
    assert page.scripts == 0 and page.external == []  # nothing to run, nothing to download
    assert "Runs #3, #4" in text and "label abc1234" in text and "host " in text
    assert "CPU AMD EPYC 7B13 64-Core Processor, Cortex-A72" in text and "toolkit 0.2.0" in text
    assert "toolkit bench out/*.onnx out/*.tflite --batch 1,8,32" in text


def test_the_table_has_every_measured_record_and_the_unstable_reasons(report):
    page = Page(report[1])
    rows = {(r[0], r[1]): r for r in page.rows if r}
    assert len(rows) == 10  # 2 + 8 measured records; the failed pair is listed below, not in the table
    row = rows[("cnn.onnx x8 (#4)", "onnxruntime")]
    assert row[2:6] == ["CPU", "fp32", "8", "single-stream"] and row[7] == "88.06%"
    assert all(re.fullmatch(r"[\d.]+ (us|ms)", cell) for cell in row[8:11])
    assert re.fullmatch(r"\d+\.\d%", row[11]) and re.fullmatch(r"[\d,]+", row[12]) and row[13] == "95.24"
    assert rows[("cnn_int8.tflite (#4)", "tflite @ raspberry-pi-4")][2] == "XNNPACK"
    unstable = rows[("cnn_int8.onnx (#4)", "onnxruntime")]
    assert unstable[-1] == "unstable" and float(unstable[11].rstrip("%")) > 10
    assert re.search(r"<li>cnn_int8\.onnx \(#4\): robust spread \d+\.\d% &gt; 10%", report[1])
    assert sum(r[-1] == "unstable" for r in rows.values()) == 1


def test_the_pareto_front_names_the_fast_and_accurate_records(report):
    # The baseline (#3) is slower at the same accuracy; the x8 and x32 sweep points are left out of the trade-off.
    page = Page(report[1])
    assert page.front == ["cnn_int8.tflite (#4)", "cnn.onnx (#4)", "cnn_fp16.tflite (#4)"]
    assert "Top-1 accuracy on the evaluation dataset against p90 latency" in report[1]
    assert "only its smallest batch is shown" in report[1]


def test_text_from_records_is_escaped(report):
    text = report[1]
    assert "<script" not in text.lower() and "<img src=x" not in text
    assert "&lt;script&gt;alert(&#x27;$1&#x27;)&lt;script&gt;&lt;img src=x onerror=console.error(1)&gt;.onnx" in text
    assert "error (#4): cnn.keras on keras: keras &lt;b&gt;is&lt;/b&gt; not installed" in text


def test_without_evaluations_or_a_sweep_size_vs_latency_and_a_note(history, tmp_path):
    out = tmp_path / "r.html"
    assert run_cli("report", "2", "--history", str(history), "--output", str(out)).returncode == 0
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert set(page.images) == {"latency", "tradeoff"} and page.notes == {"batch": NO_SWEEP_NOTE}
    assert all(min(png_size(uri)) > 0 for uri in page.images.values())
    assert "No record has an evaluation (toolkit bench --dataset NAME), so this plots file size" in text
    assert page.front == ["a.tflite", "a_int8.tflite"]  # b.onnx and c_int8.onnx are both bigger and slower


# ---------------------------------------------------------------------------------------------- Markdown
def test_a_fixed_batch_beside_batch_one_is_compared_per_sample():
    from toolkit.history import Run
    from toolkit.report import entries, tradeoff_plot

    run = Run(run_id=1, created="2026-12-02T00:00:00+00:00", label=None, command=None, host=None, toolkit=None,
              environment={}, records=[record("a.onnx", "onnxruntime", 10.0, top1=0.80),
                                       record("fixed20.onnx", "onnxruntime", 100.0, batch=20, top1=0.85)])
    plot = tradeoff_plot(entries([run]))
    # Per call, fixed20 (100 us) would look 10x slower than a.onnx; per sample (5 us) it is faster and more
    # accurate, so it alone is the front.
    assert plot.front == ["fixed20.onnx x20"]
    assert "latency is per sample" in plot.caption


def test_markdown_for_a_pull_request(history, tmp_path):
    proc = run_cli("report", "4", "--history", str(history), "--format", "md")
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    assert md.startswith("## Benchmark report: runs #4\n\n- run 4, ") and "label abc1234" in md
    assert "| model | backend | provider | prec. | batch | scenario | size | metric | p50 | p90 | p99 | spread |" in md
    assert re.search(r"^\| cnn\.onnx x32 \| onnxruntime \| CPU \| fp32 \| 32 \|", md, re.M)
    assert re.search(r"^Unstable measurements:\n\n- cnn_int8\.onnx: robust spread \d+\.\d% > 10%", md, re.M)
    assert "- error: cnn.keras on keras: keras &lt;b>is&lt;/b> not installed" in md
    assert "&lt;script>" in md and "<script" not in md and "data:image" not in md
    assert len([line for line in md.splitlines() if line.startswith("| ")]) == 1 + 8
    # --output writes the same text; an .md file needs no --format.
    out = tmp_path / "pr.md"
    assert run_cli("report", "4", "--history", str(history), "--output", str(out)).returncode == 0
    assert out.read_text(encoding="utf-8") == md


# ---------------------------------------------------------------------------------------------- refusals
def one_line_error(proc: SimpleNamespace) -> str:
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_html_without_output_is_refused_with_the_fix(history):
    line = one_line_error(run_cli("report", "latest", "--history", str(history)))
    assert "no --output was given" in line and "Add --output report.html, or use --format md" in line


@pytest.mark.parametrize("ref, words", [
    ("99", "there is no run 99 in"),
    ("latest~7", "there is no run 'latest~7'"),
    ("yesterday", "'yesterday' is not a run id"),
])
def test_an_unknown_run_is_one_line(history, tmp_path, ref, words):
    line = one_line_error(run_cli("report", "latest", ref, "--history", str(history), "--output",
                                  str(tmp_path / "r.html")))
    assert words in line and "toolkit history" in line
    assert not (tmp_path / "r.html").exists()


def test_a_run_without_successful_records_is_refused(history, tmp_path):
    line = one_line_error(run_cli("report", "1", "--history", str(history), "--format", "md"))
    assert "run 1 has no successful records (1 failed or skipped)" in line


def test_a_missing_history_is_refused_and_not_created(tmp_path):
    missing = tmp_path / "none.sqlite"
    line = one_line_error(run_cli("report", "latest", "--history", str(missing), "--format", "md"))
    assert f"there is no benchmark history at '{missing}'" in line and "toolkit bench MODEL --save" in line
    assert not missing.exists()


# ---------------------------------------------------------------------------------------------- in a browser
@pytest.mark.slow
@needs_chromium
def test_every_plot_renders_in_chromium_and_the_console_stays_empty(report, tmp_path):
    verdict, console = open_in_chromium(report[0], tmp_path)
    assert verdict.startswith("plots-ok 3/3 latency="), verdict
    assert console == []


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_catches_a_broken_plot_and_a_console_error(report, tmp_path):
    # The same report with one image's PNG cut short and a script error: both checks must fail.
    path, text = report
    uri = Page(text).images["batch"]
    broken = text.replace(uri, uri[:64]).replace("</body>", "<script>notAFunction();</script></body>")
    bad = tmp_path / "broken.html"
    bad.write_text(broken, encoding="utf-8")
    verdict, console = open_in_chromium(bad, tmp_path)
    assert verdict.startswith("plots-ok 2/3 ") and "batch=0x0" in verdict, verdict
    assert len(console) == 1 and "Uncaught ReferenceError: notAFunction is not defined" in console[0]
    assert bad.as_uri() in console[0]
