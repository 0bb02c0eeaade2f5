"""`toolkit bench`'s protocol end to end on a real ONNX Runtime: the time minimums, windows, batch sweeps, the
offline scenario, pinning, the environment and the cost model; and the flags it refuses before any child starts."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from toolkit.cli import cli

from conftest import bench_json

SMALL_CNN_MACS = 16 * 28 * 28 * 9 + 32 * 14 * 14 * (16 * 9) + 32 * 10


def run_in_process(*args: str) -> SimpleNamespace:
    result = CliRunner().invoke(cli, list(args))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory) -> Path:
    from third_party_models import make_small_cnn

    return make_small_cnn(tmp_path_factory.mktemp("protocol") / "small_cnn.onnx")


@pytest.mark.parametrize("flags, words", [
    (["--batch", "1,x"], "'x' is not a batch size"),
    (["--batch", "8,8"], "names 8 twice"),
    (["--batch", "0"], "'0' is not a batch size"),
    (["--pin", "1-0"], "is not a CPU or a range"),
    (["--pin", ""], "--pin is empty"),
    (["--pin", "4096"], "CPU 4096 is not available here"),
    (["--label", "v1"], "--label and --history are for saved runs"),
    (["--scenario", "offline", "--inputs", "__file__"], "--scenario offline batches generated inputs"),
    (["--windows", "0"], "0 is not in the range"),
    (["--min-seconds", "2", "--max-seconds", "1"], "--max-seconds 1 is shorter than --min-seconds 2"),
])
def test_bad_protocol_flags_are_refused_before_anything_runs(small_cnn, flags, words):
    flags = [str(small_cnn) if f == "__file__" else f for f in flags]
    proc = run_in_process("bench", str(small_cnn), *flags)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_time_minimums_decide_when_runs_are_few(small_cnn):
    proc, (r,) = bench_json(str(small_cnn), "--runs", "10", "--warmup", "1", "--min-seconds", "0.4",
                            "--warmup-seconds", "0.1", "--windows", "4", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert r["runs"] > 10  # 10 runs of tens of microseconds cannot fill 0.4 s
    # The timed calls add up to nearly 0.4 s: the loop's bookkeeping between them is not timed.
    assert r["runs"] * r["latency_us"]["mean"] >= 0.4e6 * 0.9
    assert len(r["stability"]["windows_p50_us"]) == 4
    assert set(r["latency_us"]) == {"p50", "p90", "p99", "mean", "std", "min", "max", "mad"}
    assert r["unstable"] == bool(r["stability"]["reasons"])
    kept = len(r["samples_us"])  # every k-th run: all of them up to 2,000, else between 1,000 and 2,000
    assert kept == r["runs"] if r["runs"] <= 2000 else 1000 < kept <= 2000
    assert len(r["block_means_us"]) == 100
    mean_of_blocks = sum(r["block_means_us"]) / 100
    assert mean_of_blocks == pytest.approx(r["latency_us"]["mean"], rel=0.01)  # near-equal blocks of every run


@pytest.mark.slow
def test_a_batch_sweep_and_the_offline_scenario(small_cnn):
    proc, records = bench_json(str(small_cnn), "--batch", "1,4", "--runs", "20")
    assert proc.returncode == 0, proc.stderr
    assert [(r["batch"], r["inputs"]["x"]) for r in records] == [(1, [1, 1, 28, 28]), (4, [4, 1, 28, 28])]
    assert all(r["scenario"] == "single-stream" for r in records)
    proc, (offline,) = bench_json(str(small_cnn), "--scenario", "offline", "--runs", "20")
    assert offline["scenario"] == "offline" and offline["batch"] == 32  # batched by default
    total_s = offline["runs"] * offline["latency_us"]["mean"] / 1e6
    assert offline["throughput_per_s"] == pytest.approx(32 * offline["runs"] / total_s, rel=0.01)


@pytest.mark.slow
def test_pinning_runs_the_measuring_process_on_those_cpus(small_cnn):
    cpu = max(os.sched_getaffinity(0))
    proc, (r,) = bench_json(str(small_cnn), "--runs", "20", "--pin", str(cpu))
    assert proc.returncode == 0, proc.stderr
    assert r["pin"] == [cpu]
    assert r["environment"]["affinity"] == str(cpu)  # read inside the measuring process, after pinning


@pytest.mark.slow
def test_the_record_carries_the_environment_and_the_cost_model(small_cnn):
    proc, (r,) = bench_json(str(small_cnn), "--runs", "20", "--batch", "2")
    assert proc.returncode == 0, proc.stderr
    env = r["environment"]
    assert {"cpu", "isa", "features", "cores", "ram_mb", "os", "python", "runtime_versions", "cpufreq"} <= set(env)
    assert "onnxruntime" in env["runtime_versions"]
    cost = r["cost"]
    assert cost["macs"] == SMALL_CNN_MACS and cost["flops"] == 2 * SMALL_CNN_MACS
    assert cost["gflops_per_s"] == pytest.approx(2 * SMALL_CNN_MACS * 2 / (r["latency_us"]["p50"] * 1e3), rel=1e-3)
    assert cost["peak_gflops"] > 0 and cost["share_of_peak"] == pytest.approx(
        cost["gflops_per_s"] / cost["peak_gflops"], rel=1e-2)
    assert r["provider"]["nodes"] and set(r["provider"]["nodes"]) == {"CPUExecutionProvider"}


@pytest.mark.slow
def test_several_processes_are_pooled_into_one_record(small_cnn):
    proc, (r,) = bench_json(str(small_cnn), "--runs", "30", "--processes", "3", "--windows", "2")
    assert proc.returncode == 0, proc.stderr
    assert r["processes"] == 3 and r["runs"] == 90
    assert len(r["stability"]["processes_p50_us"]) == 3 and len(r["stability"]["windows_p50_us"]) == 6
    assert len(r["block_means_us"]) == 90  # 30 runs each: a block per run (at most 100 blocks a process)


def test_a_history_that_is_not_one_is_refused_before_anything_is_measured(small_cnn, tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database " * 100)
    proc = run_in_process("bench", str(small_cnn), "--save", "--history", str(junk))
    assert proc.returncode == 2 and "cannot be used as a benchmark history" in proc.stderr and proc.stdout == ""


@pytest.fixture
def immutable(tmp_path):
    """A real history that cannot be written once the run is measured: chattr +i (root ignores permissions)."""
    import subprocess

    from toolkit.history import open_history

    path = tmp_path / "locked.sqlite"
    open_history(path).close()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (needs root and a file system with immutable files)")
    yield path
    subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.slow
def test_a_history_that_cannot_be_written_keeps_the_results(small_cnn, tmp_path, immutable):
    import json

    out = tmp_path / "results.json"
    proc, (r,) = bench_json(str(small_cnn), "--runs", "10", "--save", "--history", str(immutable), "--output",
                            str(out))
    assert proc.returncode == 1 and "could not be saved" in proc.stderr and "results above are complete" in proc.stderr
    assert r["status"] == "ok"  # printed before the error ...
    written = json.loads(out.read_text())
    assert written["run_id"] is None and written["results"][0]["latency_us"] == r["latency_us"]  # ... and written


@pytest.mark.slow
def test_a_fixed_batch_runs_at_its_own_batch_offline_and_other_sizes_are_refused_with_it():
    import onnx

    fixed = Path(onnx.__file__).parent / "backend/test/data/pytorch-operator/test_operator_conv/model.onnx"
    proc, (r,) = bench_json(str(fixed), "--runs", "10", "--scenario", "offline")
    assert proc.returncode == 0, proc.stderr
    assert r["batch"] == 20 and r["scenario"] == "offline"  # not the default 32: the file fixes 20
    assert r["cost"]["macs"] == 3_414_528  # per sample: the fixed batch of 20 divided out
    proc, _ = bench_json(str(fixed), "--runs", "10", "--batch", "8")
    assert proc.returncode == 2 and "fixed batch of 20" in proc.stderr and "Use --batch 20" in proc.stderr
    proc, records = bench_json(str(fixed), "--runs", "10", "--batch", "1,20")  # both mean the file's own batch
    assert proc.returncode == 0 and [r["batch"] for r in records] == [20]
