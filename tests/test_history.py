"""Kept runs: `toolkit bench --save`, `toolkit history` and `toolkit compare` on a real SQLite history; the
statistics and verdicts on synthetic series with known answers. The verdicts on real timings (back-to-back runs,
a busy core) are measured by benchmarks/compare_verdicts.py: tests never assert a wall-clock time."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.history import open_history
from toolkit.records import BenchFailure, BenchRecord
from toolkit.stats import difference, worst

from conftest import run_cli as run_cli_process


def run_cli(*args: str) -> SimpleNamespace:
    """The CLI in this process (no benchmark child is started by history and compare)."""
    result = CliRunner().invoke(cli, list(args))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def record(model: str = "/m/cnn.tflite", backend: str = "tflite", median: float = 15.0, seed: int = 0,
           spread: float = 0.02, batch: int = 1, slow_share: float = 0.0, **extra) -> BenchRecord:
    """A record with a realistic series: a tight body and 1 % of preempted calls at 4x; `slow_share` of the calls
    stalled for 50x (what a busy neighbour on the core does to the sustained rate, not to the median)."""
    rng = np.random.default_rng(seed)
    us = median * (1 + spread * rng.standard_normal(20_000))
    us[rng.random(len(us)) < 0.01] *= 4
    us[rng.random(len(us)) < slow_share] *= 50
    ns = (us * 1000).astype(int).tolist()
    from toolkit.benchmark import protocol

    return BenchRecord(model=model, backend=backend, format="tflite", precision="int8", warmup=10, batch=batch,
                       environment={"cpu": "test cpu"}, **protocol.summarise(1_000_000, ns, batch), **extra)


# ============================================================================================ statistics
def test_the_interval_of_two_draws_of_one_distribution_contains_zero_and_a_doubling_is_found():
    a, b, twice = (record(seed=s, median=m).samples_us for s, m in ((1, 15.0), (2, 15.0), (3, 30.0)))
    same = difference(a, b)
    assert same.low < 0 < same.high and same.verdict(0.05) == "no change"
    doubled = difference(a, twice)
    assert doubled.low > 0.9 and doubled.high < 1.1 and doubled.verdict(0.05) == "regression"
    halved = difference(twice, a)
    assert halved.verdict(0.05) == "improvement"


def test_a_change_near_the_threshold_is_inconclusive_not_a_regression():
    rng = np.random.default_rng(0)
    a = 15.0 * (1 + 0.2 * rng.standard_normal(300))  # few, wide samples: a wide interval
    b = a * 1.05
    d = difference(a, b)
    assert d.low < 0.05 < d.high
    assert d.verdict(0.05) == "inconclusive"


def test_a_slow_phase_widens_the_interval_instead_of_being_called_a_change(monkeypatch):
    import toolkit.stats

    a = np.full(2000, 15.0) + np.random.default_rng(0).normal(0, 0.1, 2000)
    b = a.copy()
    b[800:1200] *= 1.3  # one fifth of B ran 30 % slower: drift, not the model
    blocks = difference(a, b)
    monkeypatch.setattr(toolkit.stats, "BLOCKS", len(a))  # blocks of one call: the plain bootstrap
    plain = difference(a, b)
    assert blocks.high - blocks.low > 2.5 * (plain.high - plain.low)
    assert blocks.verdict(0.05) == "no change"
    # The sustained rate rose 6 %, but the interval reaches below the threshold: not a regression to gate on.
    monkeypatch.undo()
    assert difference(a, b, "mean").verdict(0.05) == "inconclusive"


def test_the_worse_verdict_of_the_two_statistics_stands():
    assert worst("no change", "regression") == "regression"
    assert worst("improvement", "inconclusive") == "inconclusive"
    assert worst("no change", "improvement") == "improvement"


def test_pooling_processes_is_exact_where_it_can_be_and_shows_the_spread_between_them():
    from toolkit.benchmark import protocol
    from toolkit.benchmark.processes import pool

    rng = np.random.default_rng(0)
    fast, slow = 15.0 * (1 + 0.01 * rng.standard_normal(3000)), 20.0 * (1 + 0.01 * rng.standard_normal(5000))
    parts = [BenchRecord(model="/m/cnn.tflite", backend="tflite", format="tflite", precision="int8", warmup=10,
                         **protocol.summarise(1_000_000, (us * 1000).astype(int).tolist(), 1)) for us in (fast, slow)]
    pooled = pool(parts)
    both = np.concatenate([(fast * 1000).astype(int), (slow * 1000).astype(int)]) / 1000.0
    assert pooled.runs == 8000 and pooled.processes == 2
    assert pooled.latency_us["mean"] == pytest.approx(both.mean(), abs=1e-3)
    assert pooled.latency_us["std"] == pytest.approx(both.std(), abs=1e-2)
    assert pooled.latency_us["min"] == parts[0].latency_us["min"]
    assert pooled.latency_us["max"] == parts[1].latency_us["max"]
    assert pooled.throughput_per_s == pytest.approx(8000 / (both.sum() / 1e6), rel=1e-4)
    assert pooled.stability["processes_p50_us"] == [parts[0].latency_us["p50"], parts[1].latency_us["p50"]]
    assert len(pooled.stability["windows_p50_us"]) == 10 and len(pooled.block_means_us) == 200
    assert not parts[0].unstable and not parts[1].unstable  # each process alone looks steady ...
    assert pooled.unstable and any("windows' medians differ" in r for r in pooled.stability["reasons"])  # ... not both
    assert len(pooled.samples_us) <= 2000 and pool(parts[:1]) is parts[0]


# ============================================================================================ the history
def test_a_saved_run_comes_back_whole_with_its_samples_environment_and_hashes(tmp_path):
    model = tmp_path / "cnn.tflite"
    model.write_bytes(b"weights")
    r = record(model=str(model))
    failure = BenchFailure(model=str(model), backend="onnxruntime", error="cnn.tflite on onnxruntime: no")
    with open_history(tmp_path / "h.sqlite") as db:
        run_id = db.save_run([r, failure], command="toolkit bench cnn.tflite", label="abc123",
                             sha256={str(model): "f" * 64})
        saved = db.run(run_id)
    assert saved.records[0] == r and saved.records[1] == failure
    assert saved.records[0].samples_us == r.samples_us and len(r.samples_us) == 2000
    assert saved.label == "abc123" and saved.command == "toolkit bench cnn.tflite"
    assert saved.environment == {"cpu": "test cpu"}  # the measuring side's, from the records
    assert saved.sha256 == {str(model): "f" * 64}


def test_run_references_latest_and_latest_tilde_n(tmp_path):
    with open_history(tmp_path / "h.sqlite") as db:
        ids = [db.save_run([record(seed=i)]) for i in range(3)]
        assert db.resolve("latest") == ids[2] and db.resolve("latest~2") == ids[0] and db.resolve(str(ids[1])) == ids[1]
    for bad, words in (("latest~3", "holds 3 run(s)"), ("7", "runs 1 to 3"), ("last", "not a run id")):
        proc = run_cli("history", bad, "--history", str(tmp_path / "h.sqlite"))
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_four_processes_writing_fifty_runs_each_lose_nothing(tmp_path):
    db_path = tmp_path / "shared.sqlite"
    script = (
        "import sys\n"
        "from toolkit.history import open_history\n"
        "from toolkit.records import BenchRecord\n"
        "writer = sys.argv[1]\n"
        "for i in range(50):\n"
        "    records = [BenchRecord(model=f'/m/{writer}-{i}-{k}.onnx', backend='onnxruntime', format='onnx',\n"
        "                          precision='fp32', latency_us={'p50': float(i)}, runs=100, warmup=10,\n"
        "                          samples_us=[float(i)] * 500) for k in range(3)]\n"
        "    with open_history(sys.argv[2]) as db:\n"  # a fresh connection per run, as separate commands make
        "        db.save_run(records, command=f'writer {writer}', label=f'{writer}-{i}')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, f"w{n}", str(db_path)], stderr=subprocess.PIPE,
                              text=True) for n in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with open_history(db_path) as db:
        rows = db.rows(limit=10_000)
        assert len(db.run_ids()) == 200 and len(rows) == 600
        labels = {r.label for r in rows}
        assert labels == {f"w{n}-{i}" for n in range(4) for i in range(50)}
        for run_id in db.run_ids():  # every run whole: its three records, in order, with their samples
            run = db.run(run_id)
            writer, i = run.label.split("-")
            assert [Path(r.model).name for r in run.records] == [f"{writer}-{i}-{k}.onnx" for k in range(3)]
            assert all(r.samples_us == [float(i)] * 500 for r in run.records)
    check = sqlite3.connect(db_path)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_history_lists_and_filters_by_model_backend_target_and_date(tmp_path):
    db_path = str(tmp_path / "h.sqlite")
    with open_history(db_path) as db:
        db.save_run([record(model="/a/cnn.tflite"), record(model="/a/cnn.onnx", backend="onnxruntime")])
        db.save_run([record(model="/a/mlp.tflite", target="raspberry-pi-4")], label="pi")
    listed = json.loads(run_cli("history", "--history", db_path, "--format", "json").stdout)["rows"]
    assert [(r["run_id"], Path(r["model"]).name) for r in listed] == [(2, "mlp.tflite"), (1, "cnn.tflite"),
                                                                      (1, "cnn.onnx")]
    only = lambda *flags: [Path(r["model"]).name for r in json.loads(  # noqa: E731
        run_cli("history", "--history", db_path, "--format", "json", *flags).stdout)["rows"]]
    assert only("--backend", "onnxruntime") == ["cnn.onnx"]
    assert only("--model", "cnn.tflite") == ["cnn.tflite"]
    assert only("--target", "raspberry-pi-4") == ["mlp.tflite"]
    assert only("--target", "host") == ["cnn.tflite", "cnn.onnx"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(only("--since", today)) == 3 and only("--until", "2000-01-01") == []
    table = run_cli("history", "--history", db_path)
    assert table.returncode == 0 and "mlp.tflite" in table.stdout and "pi" in table.stdout
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(run_cli("history", "--history", db_path, "--format", "csv").stdout)))
    assert len(rows) == 3 and all(None not in r for r in rows)  # as many fields as header columns
    assert (rows[0]["model"], rows[0]["target"], rows[0]["batch"], rows[0]["status"]) == ("/a/mlp.tflite",
                                                                                         "raspberry-pi-4", "1", "ok")
    first = listed[-1]["created"][:19]  # run 1, to the second: a time includes its whole second, either way
    assert len(only("--since", first.replace("T", " "))) == 3 and len(only("--until", first)) >= 2
    printed = listed[-1]["created"]  # as history prints it, with its UTC offset
    assert len(only("--since", printed)) == 3 and len(only("--since", printed.replace("+00:00", "Z"))) == 3
    for bad_date in ("yesterday", "2026-13-01", "2026-02-30", "2026-12-02T99:00"):
        bad = run_cli("history", "--history", db_path, "--since", bad_date)
        assert bad.returncode == 2 and "not a date" in bad.stderr, bad_date
    backwards = run_cli("history", "--history", db_path, "--since", "2026-12-02", "--until", "2026-12-01")
    assert backwards.returncode == 2 and "is after --until" in backwards.stderr


def test_reading_a_history_that_does_not_exist_or_is_not_a_database_says_so(tmp_path):
    missing = run_cli("history", "--history", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 2 and "no benchmark history" in missing.stderr and "--save" in missing.stderr
    assert not (tmp_path / "none.sqlite").exists()  # reading never creates one
    junk = tmp_path / "junk.sqlite"
    junk.write_text("these are not the pages of a database " * 100)
    proc = run_cli("compare", "1", "2", "--history", str(junk))
    assert proc.returncode == 2 and "cannot be used as a benchmark history" in proc.stderr
    assert junk.read_text().startswith("these are not")  # left as it was


# ============================================================================================ compare
def _two_runs(tmp_path, a: list[BenchRecord], b: list[BenchRecord]) -> str:
    db_path = str(tmp_path / "h.sqlite")
    with open_history(db_path) as db:
        db.save_run(a)
        db.save_run(b)
    return db_path


def test_compare_noise_is_no_change_and_exits_0(tmp_path):
    db_path = _two_runs(tmp_path, [record(seed=1)], [record(seed=2)])
    proc = run_cli("compare", "1", "2", "--history", db_path, "--format", "json")
    assert proc.returncode == 0
    (pair,) = json.loads(proc.stdout)["pairs"]
    assert pair["verdict"] == "no change" and pair["ci_low"] <= 0 <= pair["ci_high"]


def test_compare_a_doubled_latency_is_a_regression_and_exits_1(tmp_path):
    db_path = _two_runs(tmp_path, [record(seed=1), record(model="/m/mlp.tflite", seed=3)],
                        [record(seed=2, median=30.0), record(model="/m/mlp.tflite", seed=4)])
    proc = run_cli("compare", "latest~1", "latest", "--history", db_path)
    assert proc.returncode == 1
    rows = {line.split()[1]: line for line in proc.stdout.splitlines() if ".tflite" in line}
    assert "regression" in rows["cnn.tflite"] and "+100" in rows["cnn.tflite"]
    assert "no change" in rows["mlp.tflite"]
    as_json = json.loads(run_cli("compare", "1", "2", "--history", db_path, "--format", "json").stdout)
    assert as_json["regressions"] == 1 and as_json["threshold"] == 0.05


def test_compare_a_sustained_slowdown_with_a_steady_median_is_a_regression(tmp_path):
    # 2 % of the calls stalled 50x: the median does not move, the time per call doubles.
    db_path = _two_runs(tmp_path, [record(seed=1)], [record(seed=2, slow_share=0.02)])
    proc = run_cli("compare", "1", "2", "--history", db_path, "--format", "json")
    (pair,) = json.loads(proc.stdout)["pairs"]
    assert abs(pair["change"]) < 0.01 and pair["mean_change"] > 0.8
    assert pair["verdict"] == "regression" and proc.returncode == 1
    assert any("typical call is unchanged" in n for n in pair["notes"])


def test_compare_threshold_decides_what_counts(tmp_path):
    db_path = _two_runs(tmp_path, [record(seed=1)], [record(seed=2, median=16.5)])  # 10 % slower
    assert run_cli("compare", "1", "2", "--history", db_path, "--threshold", "5%").returncode == 1
    assert run_cli("compare", "1", "2", "--history", db_path, "--threshold", "20").returncode == 0
    bad = run_cli("compare", "1", "2", "--history", db_path, "--threshold", "five")
    assert bad.returncode == 2 and "not a percentage" in bad.stderr
    ambiguous = run_cli("compare", "1", "2", "--history", db_path, "--threshold", "0.05")
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr and "--threshold 5%" in ambiguous.stderr
    for out_of_range in ("-5%", "200%"):
        bad = run_cli("compare", "1", "2", "--history", db_path, "--threshold", out_of_range)
        assert bad.returncode == 2 and "out of range" in bad.stderr and "0% to 100%" in bad.stderr


def test_compare_pairs_by_model_backend_and_batch_and_lists_the_rest(tmp_path):
    db_path = _two_runs(tmp_path, [record(), record(batch=8)],
                        [record(seed=5), record(backend="onnxruntime", model="/m/cnn.onnx")])
    result = json.loads(run_cli("compare", "1", "2", "--history", db_path, "--format", "json").stdout)
    assert [p["pair"] for p in result["pairs"]] == ["cnn.tflite on tflite"]
    assert result["only_in_a"] == ["cnn.tflite on tflite x8"] and result["only_in_b"] == ["cnn.onnx on onnxruntime"]
    md = run_cli("compare", "1", "2", "--history", db_path, "--format", "markdown").stdout
    assert md.startswith("## Run 2 against run 1") and "| cnn.tflite on tflite |" in md


def test_compare_two_runs_of_one_model_each_compares_them_and_notes_a_changed_file(tmp_path):
    db_path = str(tmp_path / "h.sqlite")
    with open_history(db_path) as db:
        db.save_run([record(model="/m/cnn.tflite")], sha256={"/m/cnn.tflite": "a" * 64})
        db.save_run([record(model="/m/cnn_int8.tflite", median=7.5)], sha256={"/m/cnn_int8.tflite": "b" * 64})
    (pair,) = json.loads(run_cli("compare", "1", "2", "--history", db_path, "--format", "json").stdout)["pairs"]
    assert pair["pair"] == "cnn.tflite on tflite -> cnn_int8.tflite on tflite" and pair["verdict"] == "improvement"
    assert pair["notes"] == ["different models (cnn.tflite and cnn_int8.tflite): the only record of each run, "
                             "compared as asked"]  # not "the model file changed": they are two models


def test_compare_markdown_carries_the_notes_for_a_pull_request(tmp_path):
    db_path = _two_runs(tmp_path, [record(seed=1)], [record(model="/m/cnn_int8.tflite", seed=2, slow_share=0.02)])
    md = run_cli("compare", "1", "2", "--history", db_path, "--format", "markdown")
    assert md.returncode == 1 and md.stderr == ""
    assert "- cnn.tflite on tflite -> cnn_int8.tflite on tflite: different models (cnn.tflite and" in md.stdout
    assert "typical call is unchanged" in md.stdout
    itself = json.loads(run_cli("compare", "2", "2", "--history", db_path, "--format", "json").stdout)["pairs"][0]
    assert itself["notes"][0].startswith("a run compared with itself") and itself["change"] == 0
    assert itself["verdict"] == "no change"


def test_one_record_each_at_different_batches_is_compared_per_sample(tmp_path):
    # 30 us for a call of 8 samples against 15 us for 1: per sample 3.75 against 15 us, a 4x improvement.
    db_path = _two_runs(tmp_path, [record(seed=1)], [record(seed=2, median=30.0, batch=8)])
    proc = run_cli("compare", "1", "2", "--history", db_path, "--format", "json")
    (pair,) = json.loads(proc.stdout)["pairs"]
    assert proc.returncode == 0 and pair["verdict"] == "improvement"
    assert pair["change"] == pytest.approx(-0.75, abs=0.01)
    assert "batches 1 and 8: compared per sample" in pair["notes"][0]


def test_compare_runs_with_nothing_in_common_is_refused(tmp_path):
    db_path = _two_runs(tmp_path, [record(), record(batch=8)], [record(backend="onnxruntime"), record(batch=4)])
    proc = run_cli("compare", "1", "2", "--history", db_path)
    assert proc.returncode == 2 and "no measurement in common" in proc.stderr


# ============================================================================================ real benchmarks
@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory) -> Path:
    from third_party_models import make_small_cnn

    return make_small_cnn(tmp_path_factory.mktemp("small_cnn") / "small_cnn.onnx")


@pytest.mark.slow
def test_bench_save_prints_the_run_id_and_keeps_what_was_measured(small_cnn, tmp_path):
    db_path = str(tmp_path / "h.sqlite")
    proc = run_cli_process("bench", str(small_cnn), "--runs", "50", "--batch", "1,4", "--save", "--history", db_path,
                           "--label", "v1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run_id"] == 1 and [r["batch"] for r in out["results"]] == [1, 4]
    with open_history(db_path) as db:
        saved = db.run(1)
    assert [r.to_dict() for r in saved.records] == out["results"]
    from toolkit.artifact import sha256_file

    assert saved.sha256 == {str(small_cnn): sha256_file(small_cnn)} and saved.label == "v1"
    assert "--batch 1,4" in saved.command
    table = run_cli_process("bench", str(small_cnn), "--runs", "20", "--save", "--history", db_path)
    assert "saved as run 2" in table.stderr
    # Real series compare: whatever the machine did (timings are not asserted here; benchmarks/compare_verdicts.py
    # measures the verdicts), the interval holds its estimate and the exit code follows the verdict.
    proc = run_cli("compare", "1", "2", "--history", db_path, "--format", "json")
    (pair,) = json.loads(proc.stdout)["pairs"]
    assert pair["pair"] == "small_cnn.onnx on onnxruntime"
    assert pair["ci_low"] <= pair["change"] <= pair["ci_high"]
    assert pair["mean_ci_low"] <= pair["mean_change"] <= pair["mean_ci_high"]
    assert proc.returncode == (1 if pair["verdict"] == "regression" else 0)
