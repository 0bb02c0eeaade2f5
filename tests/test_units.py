"""Fast unit tests of the plugin contract's pure functions: the measuring protocol, metrics and parity rules,
records and their renderings, shapes, options, registries and the process-boundary encoding.

No training and no runtime; the only child process is the one that proves protocol.py is self-contained.
"""

from __future__ import annotations

import base64
import csv
import gc
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from toolkit.api import (Backend, BenchFailure, BenchRecord, BenchRequest, Dataset, PluginOption, TensorSpec,
                         UnknownNameError, UsageError)
from toolkit.benchmark import protocol
from toolkit.benchmark.protocol import ProtocolError
from toolkit.child import dumps, loads
from toolkit.cli import render
from toolkit.inputs import parse_shape_overrides, resolve_shapes, short_name
from toolkit.metrics import add_sums, compare_outputs, finish_metrics, headline, task_metrics
from toolkit.options import parse_pairs, resolve_options
from toolkit.records import RECORD_SCHEMA, record_from_dict
from toolkit.registry import KINDS_BY_HOOK, Registry
from toolkit.units import fmt_us, human_size


def spec(name: str, shape, dtype: str = "float32", quantization=None) -> dict:
    """A tensor spec in the protocol's JSON form."""
    return {"name": name, "shape": list(shape), "dtype": dtype, "quantization": quantization}


# ============================================================================================ protocol: statistics
def test_latency_summary_reports_microseconds_from_nanoseconds():
    summary = protocol.latency_summary([1000 * i for i in range(1, 101)])  # 1 us .. 100 us
    assert summary["min"] == 1.0
    assert summary["max"] == 100.0
    assert summary["p50"] == 50.5
    assert summary["p90"] == 90.1
    assert summary["p99"] == 99.01
    assert summary["mean"] == 50.5


def test_latency_summary_percentiles_are_ordered_from_min_to_max():
    rng = np.random.default_rng(3)
    s = protocol.latency_summary(rng.integers(10_000, 5_000_000, size=257).tolist())
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert s["min"] <= s["mean"] <= s["max"]
    assert set(s) == {"p50", "p90", "p99", "mean", "std", "min", "max", "mad"}


def test_mad_and_the_spreads_have_their_textbook_values_on_a_known_series():
    # 1..9 us: median 5, absolute deviations 4,3,2,1,0,1,2,3,4 -> MAD 2; mean 5, population std sqrt(60/9).
    times = [1000 * i for i in range(1, 10)]
    assert protocol.latency_summary(times)["mad"] == 2.0
    s = protocol.stability(times, windows=3)
    assert s["robust_cv"] == round(1.4826 * 2 / 5, 4)
    assert s["cv"] == round(float(np.sqrt(60 / 9)) / 5, 4)
    assert s["windows_p50_us"] == [2.0, 5.0, 8.0]  # the windows are consecutive: [1,2,3], [4,5,6], [7,8,9]
    assert s["window_spread"] == round((8 - 2) / 5, 4)


def test_a_steady_series_with_rare_outliers_is_stable_though_its_plain_cv_is_high():
    # What a real run looks like here: a tight body and a few preempted calls (57 us beside 15 us).
    rng = np.random.default_rng(0)
    us = 15.0 * (1 + 0.02 * rng.standard_normal(5000))
    us[rng.random(5000) < 0.01] = 57.0
    s = protocol.stability((us * 1000).astype(int).tolist())
    assert s["cv"] > 0.15  # the plain CV would call it unstable ...
    assert s["robust_cv"] < 0.05 and s["window_spread"] < 0.02
    assert s["reasons"] == []  # ... the robust spread and the windows do not


def test_a_wide_series_is_unstable_by_its_robust_spread():
    rng = np.random.default_rng(1)
    us = rng.uniform(10.0, 20.0, 5000)
    s = protocol.stability((us * 1000).astype(int).tolist())
    assert s["robust_cv"] > 0.10
    assert any("robust spread" in r for r in s["reasons"])


def test_a_slow_phase_makes_the_windows_disagree():
    us = np.full(5000, 15.0)
    us[3000:4000] = 19.5  # the fourth of five windows ran 30 % slower: a neighbour, throttling
    s = protocol.stability((us * 1000).astype(int).tolist(), windows=5)
    assert s["windows_p50_us"] == [15.0, 15.0, 15.0, 19.5, 15.0]
    assert s["robust_cv"] == 0.0
    assert s["reasons"] == ["the 5 windows' medians differ by 30.0% > 10%"]


def test_rare_very_slow_calls_that_carry_much_of_the_time_are_unstable():
    us = np.full(1000, 10.0)
    us[::50] = 200.0  # 2 % of the calls take 20x: the median does not see them, the mean (and throughput) do
    s = protocol.stability((us * 1000).astype(int).tolist())
    assert s["robust_cv"] == 0.0 and s["window_spread"] == 0.0
    assert s["reasons"] == ["the mean is 38% above the median (rare, very slow calls)"]


def test_fewer_than_ten_runs_are_unstable_whatever_their_numbers():
    assert protocol.stability([15_000] * 9)["reasons"] == ["only 9 runs"]
    assert protocol.stability([15_000] * 10)["reasons"] == []


def test_summarise_gives_the_sustained_throughput_and_keeps_samples_in_time_order():
    times = [10_000 + i for i in range(10_000)]  # about 15 us each, rising
    s = protocol.summarise(2_000_000, times, batch=8)
    assert s["runs"] == 10_000 and s["first_run_ms"] == 2.0
    assert s["throughput_per_s"] == round(8 * 10_000 / (sum(times) / 1e9), 2)
    assert len(s["samples_us"]) == protocol.SAMPLES_KEPT
    assert s["samples_us"] == sorted(s["samples_us"]) and s["samples_us"][0] == 10.0  # every 5th, in order


# ============================================================================================ protocol: timing
def test_time_calls_makes_one_first_call_then_the_warmup_then_the_timed_runs():
    calls = []
    first_ns, times = protocol.time_calls(lambda: calls.append(1), runs=25, warmup=4)
    assert len(calls) == 1 + 4 + 25
    assert len(times) == 25
    assert all(isinstance(t, int) and t >= 0 for t in times)
    assert first_ns >= 0


def test_time_calls_times_the_first_call_apart_from_the_others():
    state = {"n": 0}

    def slow_first_call():
        state["n"] += 1
        if state["n"] == 1:
            time.sleep(0.03)

    first_ns, times = protocol.time_calls(slow_first_call, runs=10, warmup=0)
    assert first_ns >= 30_000_000
    assert max(times) < 30_000_000


def test_time_calls_stops_once_max_seconds_is_spent():
    first_ns, times = protocol.time_calls(lambda: time.sleep(0.002), runs=1000, warmup=0, max_seconds=0.05)
    assert protocol.MIN_RUNS_UNDER_BUDGET <= len(times) < 100


def test_time_calls_still_makes_ten_runs_when_the_budget_is_already_spent():
    _, times = protocol.time_calls(lambda: time.sleep(0.003), runs=50, warmup=0, max_seconds=0.001)
    assert len(times) == protocol.MIN_RUNS_UNDER_BUDGET


def test_time_calls_with_fewer_runs_than_the_minimum_makes_exactly_those_runs():
    _, times = protocol.time_calls(lambda: time.sleep(0.002), runs=3, warmup=0, max_seconds=0.001)
    assert len(times) == 3


def test_time_calls_times_for_at_least_min_seconds_and_warms_up_for_warmup_seconds():
    calls = []
    t0 = time.perf_counter()
    first_ns, times = protocol.time_calls(lambda: calls.append(time.perf_counter()), runs=5, warmup=2,
                                          min_seconds=0.2, warmup_seconds=0.1)
    assert len(times) > 5  # the minimum time, not the run count, decided
    warm_calls = len(calls) - 1 - len(times)
    assert warm_calls > 2
    assert calls[1 + warm_calls] - calls[0] >= 0.1  # from the first call to the first timed one: the warm-up
    assert calls[-1] - calls[1 + warm_calls] >= 0.19  # the timed runs lasted their 0.2 s (less the last call)
    assert time.perf_counter() - t0 < 5


def test_time_calls_turns_garbage_collection_back_on_even_when_the_call_fails():
    assert gc.isenabled()
    state = {"n": 0}

    def fails_on_third_timed_call():
        state["n"] += 1
        if state["n"] == 4:
            raise RuntimeError("runtime died")

    with pytest.raises(RuntimeError, match="runtime died"):
        protocol.time_calls(fails_on_third_timed_call, runs=10, warmup=0)
    assert gc.isenabled()


# ============================================================================================ protocol: inputs
def test_make_inputs_gives_each_input_its_declared_dtype_and_shape():
    specs = [spec("image", [None, 4, 4], "float32"), spec("half", [3], "float16"), spec("ids", [2, 8], "int64"),
             spec("mask", [2, 8], "bool")]
    shapes = {"image": (2, 4, 4), "half": (3,), "ids": (2, 8), "mask": (2, 8)}
    out = protocol.make_inputs(specs, shapes)
    assert {k: (v.dtype, v.shape) for k, v in out.items()} == {
        "image": (np.dtype("float32"), (2, 4, 4)), "half": (np.dtype("float16"), (3,)),
        "ids": (np.dtype("int64"), (2, 8)), "mask": (np.dtype("bool"), (2, 8))}


def test_generated_floats_lie_in_zero_to_one_and_plain_integers_are_zero_or_one():
    out = protocol.make_inputs([spec("x", [1000], "float32"), spec("ids", [1000], "int32")],
                               {"x": (1000,), "ids": (1000,)})
    assert 0.0 <= out["x"].min() and out["x"].max() < 1.0
    assert set(np.unique(out["ids"]).tolist()) == {0, 1}


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantized_integer_inputs_span_their_whole_range(dtype):
    q = {"scale": [0.1], "zero_point": [0], "axis": None}
    out = protocol.make_inputs([spec("q", [20000], dtype, q)], {"q": (20000,)})["q"]
    info = np.iinfo(dtype)
    assert out.dtype == np.dtype(dtype)
    assert out.min() == info.min and out.max() == info.max


def test_make_inputs_is_reproducible_for_a_seed_and_differs_between_seeds():
    specs, shapes = [spec("x", [16], "float32")], {"x": (16,)}
    a = protocol.make_inputs(specs, shapes, seed=7)["x"]
    b = protocol.make_inputs(specs, shapes, seed=7)["x"]
    c = protocol.make_inputs(specs, shapes, seed=8)["x"]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("dtype", ["object", "complex64", "bytes"])
def test_an_input_dtype_that_cannot_be_made_up_is_a_protocol_error_that_names_the_input(dtype):
    with pytest.raises(ProtocolError, match=r"input 'blob' has dtype .*--inputs FILE\.npz"):
        protocol.make_inputs([spec("blob", [2], dtype)], {"blob": (2,)})


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn"])
def test_an_input_dtype_numpy_does_not_know_is_a_protocol_error_too(dtype):
    with pytest.raises(ProtocolError, match="blob"):
        protocol.make_inputs([spec("blob", [2], dtype)], {"blob": (2,)})


# ============================================================================================ protocol: outputs
def test_a_dynamic_dimension_accepts_any_size():
    assert protocol.shape_fits([None, 10], (1, 10))
    assert protocol.shape_fits([None, 10], (4096, 10))


def test_a_fixed_dimension_or_a_different_rank_does_not_fit():
    assert not protocol.shape_fits([None, 10], (4, 9))
    assert not protocol.shape_fits([None, 10], (4, 10, 1))
    assert protocol.shape_fits([], ())


OUT_SPECS = [spec("logits", [None, 10], "float32")]


def test_outputs_of_the_declared_name_dtype_and_shape_pass():
    protocol.check_outputs({"logits": np.zeros((3, 10), np.float32)}, OUT_SPECS)  # no exception


def test_a_missing_output_is_named():
    with pytest.raises(ProtocolError, match=r"missing logits.*declared: logits"):
        protocol.check_outputs({}, OUT_SPECS)


def test_an_undeclared_extra_output_is_refused():
    with pytest.raises(ProtocolError, match="undeclared debug"):
        protocol.check_outputs({"logits": np.zeros((1, 10), np.float32), "debug": np.zeros(1)}, OUT_SPECS)


def test_float64_for_a_declared_float32_output_is_refused():
    with pytest.raises(ProtocolError, match="'logits' has dtype float64, the model declares float32"):
        protocol.check_outputs({"logits": np.zeros((1, 10), np.float64)}, OUT_SPECS)


def test_n_by_9_for_a_declared_none_by_10_output_is_refused_with_both_shapes():
    with pytest.raises(ProtocolError, match=r"shape \[5, 9\], the model declares \[\?, 10\]"):
        protocol.check_outputs({"logits": np.zeros((5, 9), np.float32)}, OUT_SPECS)


def test_an_output_that_is_not_a_numpy_array_is_refused():
    with pytest.raises(ProtocolError, match="'logits' is a list, not a numpy array"):
        protocol.check_outputs({"logits": [[0.0] * 10]}, OUT_SPECS)


def test_outputs_that_are_not_a_mapping_are_refused():
    with pytest.raises(ProtocolError, match="returned a list"):
        protocol.check_outputs([np.zeros((1, 10), np.float32)], OUT_SPECS)


@pytest.mark.parametrize("dtype", ["tensor(string)", "seq(tensor(float))"])
def test_a_non_tensor_output_is_returned_as_the_runtime_gives_it(dtype):
    specs = OUT_SPECS + [spec("other", [], dtype)]
    protocol.check_outputs({"logits": np.zeros((1, 10), np.float32), "other": [{"a": 1}]}, specs)


def test_an_onnx_classifier_seq_map_output_is_skipped_by_the_check():
    specs = OUT_SPECS + [spec("output_probability", [], "seq(map(int64,tensor(float)))")]
    protocol.check_outputs({"logits": np.zeros((1, 10), np.float32),
                            "output_probability": [{0: 0.2, 1: 0.8}]}, specs)


# ============================================================================================ protocol: machine
def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_rss_mb_is_this_process_vmhwm_in_megabytes():
    before = _vmhwm_mb()
    value = protocol.peak_rss_mb()
    after = _vmhwm_mb()
    assert value is not None
    assert before - 0.05 <= value <= after + 0.05


def test_environment_describes_the_machine_and_the_libraries():
    env = protocol.environment({"onnxruntime": "1.2.3"}, toolkit_version="9.9")
    assert set(env) == {"cpu", "isa", "features", "arch", "cores", "ram_mb", "os", "python", "numpy", "toolkit",
                        "runtime_versions", "cpufreq", "affinity"}
    assert set(env["cpufreq"]) == {"governor", "cur_mhz", "max_mhz"}
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    assert ("avx2" in env["features"]) == (" avx2" in flags)  # the user-facing names follow the real flags
    assert ("vnni" in env["features"]) == ("vnni" in flags)
    assert env["numpy"] == np.__version__
    assert env["cores"] == os.cpu_count()
    assert env["toolkit"] == "9.9"
    assert env["runtime_versions"] == {"onnxruntime": "1.2.3"}
    assert set(env["isa"]) <= set(protocol.INTERESTING_FLAGS)
    assert protocol.environment()["runtime_versions"] == {}


def test_protocol_py_runs_alone_with_only_numpy(tmp_path):
    """The file is shipped to boards: copied anywhere, it must import, time and check without the toolkit."""
    shutil.copy(protocol.__file__, tmp_path / "protocol.py")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        import protocol
        a = np.ones((8, 8), np.float32)
        first, times = protocol.time_calls(lambda: a @ a, runs=20, warmup=2)
        specs = [{{"name": "y", "shape": [None, 8], "dtype": "float32", "quantization": None}}]
        protocol.check_outputs({{"y": a @ a}}, specs)
        try:
            protocol.check_outputs({{"y": (a @ a).astype(np.float64)}}, specs)
            refused = None
        except protocol.ProtocolError as e:
            refused = str(e)
        print(json.dumps({{"file": protocol.__file__, "runs": len(times), "first": first, "refused": refused,
                          "summary": protocol.latency_summary(times),
                          "toolkit": sorted(m for m in sys.modules if m.startswith("toolkit"))}}))
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert Path(result["file"]).parent == tmp_path
    assert result["toolkit"] == []
    assert result["runs"] == 20 and result["first"] > 0
    assert result["summary"]["p50"] > 0
    assert "dtype float64" in result["refused"]


# ============================================================================================ metrics
def test_classification_metrics_count_top1_over_batches():
    total: dict[str, float] = {}
    add_sums(total, task_metrics("classification", np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 0])))
    add_sums(total, task_metrics("classification", np.array([[0.3, 0.7], [0.6, 0.4]]), np.array([0, 0])))
    assert total == {"correct": 3.0, "n": 4.0}
    assert finish_metrics("classification", total) == {"top1": 0.75, "samples": 4}


def test_regression_metrics_give_mae_and_rmse_over_batches():
    total: dict[str, float] = {}
    add_sums(total, task_metrics("regression", np.array([[1.0], [2.0]]), np.array([1.5, 2.0])))
    add_sums(total, task_metrics("regression", np.array([[3.0]]), np.array([5.0])))
    result = finish_metrics("regression", total)
    # errors -0.5, 0, -2
    assert result["samples"] == 3
    assert result["mae"] == pytest.approx(2.5 / 3)
    assert result["rmse"] == pytest.approx(math.sqrt(4.25 / 3))


def test_regression_targets_that_do_not_fit_the_outputs_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        task_metrics("regression", np.zeros((4, 2)), np.zeros((4, 3)))


def test_metrics_over_no_samples_are_none_not_a_division_by_zero():
    assert finish_metrics("classification", {}) == {"top1": None, "samples": 0}
    assert finish_metrics("regression", {}) == {"mae": None, "rmse": None, "samples": 0}


def test_headline_is_top1_for_a_classifier_and_rmse_for_a_regressor():
    assert headline("classification", {"top1": 0.88, "samples": 10}) == ("top1", 0.88)
    assert headline("regression", {"mae": 0.2, "rmse": 0.3}) == ("rmse", 0.3)
    assert headline("regression", {"mae": 0.2, "rmse": None}) == ("mae", 0.2)
    assert headline(None, None) is None
    assert headline("classification", {"samples": 0}) is None


def _logits(classes: list[int], n_classes: int = 10) -> np.ndarray:
    out = np.zeros((len(classes), n_classes), np.float32)
    out[np.arange(len(classes)), classes] = 5.0
    return out


def test_an_fp32_candidate_equal_to_its_source_passes_allclose():
    ref = {"y": np.linspace(-1, 1, 40, dtype=np.float32).reshape(4, 10)}
    result = compare_outputs(ref, {"y": ref["y"].copy()}, "classification", "fp32")
    assert result["passed"]
    assert result["max_abs_diff"] == 0.0
    assert "allclose" in result["rule"]


def test_an_fp32_candidate_off_by_1e_2_fails():
    ref = {"y": np.linspace(-1, 1, 40, dtype=np.float32).reshape(4, 10)}
    result = compare_outputs(ref, {"y": ref["y"] + 1e-2}, "classification", "fp32")
    assert not result["passed"]
    assert result["max_abs_diff"] == pytest.approx(1e-2, rel=1e-3)


def test_an_int8_classifier_passes_with_97_percent_top1_agreement_and_fails_with_96():
    source = [i % 10 for i in range(100)]
    three_wrong = [(c + 1) % 10 if i < 3 else c for i, c in enumerate(source)]
    four_wrong = [(c + 1) % 10 if i < 4 else c for i, c in enumerate(source)]
    ok = compare_outputs({"y": _logits(source)}, {"y": _logits(three_wrong)}, "classification", "int8")
    bad = compare_outputs({"y": _logits(source)}, {"y": _logits(four_wrong)}, "classification", "int8")
    assert ok["passed"] and ok["top1_agreement"] == 0.97
    assert not bad["passed"] and bad["top1_agreement"] == 0.96
    assert "top-1 agreement" in ok["rule"]


def test_a_quantized_regressor_is_judged_by_its_error_relative_to_the_source_spread():
    ref = np.linspace(0.0, 10.0, 300).reshape(100, 3)  # three columns: top-1 would apply if it were a classifier
    spread = float(ref.std())
    close = compare_outputs({"y": ref}, {"y": ref + 0.05 * spread}, "regression", "int8")
    far = compare_outputs({"y": ref}, {"y": ref + 0.2 * spread}, "regression", "int8")
    assert close["passed"] and close["outputs"]["y"]["nrmse"] == pytest.approx(0.05, abs=1e-4)
    assert not far["passed"] and far["outputs"]["y"]["nrmse"] == pytest.approx(0.2, abs=1e-4)
    assert close["top1_agreement"] is None
    assert "spread" in close["rule"]


def test_every_output_is_compared_so_a_second_output_that_differs_fails():
    a = np.linspace(-1, 1, 40, dtype=np.float32).reshape(4, 10)
    b = np.linspace(0, 3, 8, dtype=np.float32).reshape(4, 2)
    result = compare_outputs({"a": a, "b": b}, {"a": a.copy(), "b": b + 1e-2}, None, "fp32")
    assert result["outputs"]["a"]["passed"] is True
    assert result["outputs"]["b"]["passed"] is False
    assert not result["passed"]


def test_a_candidate_missing_an_output_fails_and_names_it():
    a = np.zeros((2, 3), np.float32)
    result = compare_outputs({"a": a, "b": a}, {"a": a}, None, "fp32")
    assert not result["passed"]
    assert result["missing"] == ["b"]


def test_a_candidate_output_of_another_shape_fails():
    result = compare_outputs({"y": np.zeros((4, 10))}, {"y": np.zeros((4, 9))}, None, "fp32")
    assert not result["passed"]
    assert "shape" in result["outputs"]["y"]["why"]


# ============================================================================================ records
def _record(**over) -> BenchRecord:
    base = dict(model="/models/cnn.onnx", backend="onnxruntime", format="onnx", precision="int8",
                latency_us={"p50": 1234.5, "p90": 1500.0, "p99": 1600.0, "mean": 1250.0, "std": 10.0,
                            "min": 1200.0, "max": 1700.0},
                runs=100, warmup=10, provider={"providers": ["CPUExecutionProvider"]}, size_bytes=2048,
                evaluation={"dataset": "digits", "top1": 0.875, "samples": 8}, task="classification",
                throughput_per_s=810.2, environment={"cpu": "test"})
    base.update(over)
    return BenchRecord(**base)


def _failure(**over) -> BenchFailure:
    base = dict(model="/models/cnn.keras", backend="keras",
                error="keras is not installed. Install it with: pip install 'edge-toolkit[keras]'")
    base.update(over)
    return BenchFailure(**base)


def test_a_bench_record_round_trips_through_json():
    rec = _record()
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["schema"] == RECORD_SCHEMA and d["status"] == "ok"
    assert BenchRecord.from_dict(d) == rec


def test_a_bench_failure_round_trips_through_json():
    fail = _failure(status="skipped", exit_code=2, details="trace")
    d = json.loads(json.dumps(fail.to_dict()))
    assert d["schema"] == RECORD_SCHEMA
    assert BenchFailure.from_dict(d) == fail


def test_a_bench_request_round_trips_through_json():
    req = BenchRequest(model="m.onnx", backend="onnxruntime", threads=2, batch=4, shapes={"x": [4, 8]},
                       max_seconds=1.5, options={"graph_optimization": "all"})
    assert BenchRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req


def test_a_record_from_a_newer_schema_loads_ignoring_the_fields_it_added():
    d = {**_record().to_dict(), "schema": RECORD_SCHEMA + 1, "energy_mj": 3.2}
    rec = BenchRecord.from_dict(d)
    assert rec.schema == RECORD_SCHEMA + 1
    assert not hasattr(rec, "energy_mj")
    assert BenchFailure.from_dict({**_failure().to_dict(), "new": 1}) == _failure()
    assert BenchRequest.from_dict({"model": "m", "backend": "b", "new": 1}) == BenchRequest("m", "b")


def test_record_from_dict_picks_the_class_by_status():
    assert isinstance(record_from_dict(_record().to_dict()), BenchRecord)
    assert isinstance(record_from_dict(_failure().to_dict()), BenchFailure)
    assert isinstance(record_from_dict(_failure(status="skipped").to_dict()), BenchFailure)


# ============================================================================================ rendering
def test_sizes_use_binary_units_named_as_such():
    assert human_size(2048) == "2.0 KiB"
    assert human_size(512) == "512 B"
    assert human_size(3 * 1024 ** 2) == "3.0 MiB"
    assert human_size(None) == ""


def test_latencies_are_microseconds_below_ten_milliseconds_and_milliseconds_above():
    assert fmt_us(1234.5) == "1234.5 us"
    assert fmt_us(12345.0) == "12.35 ms"


@pytest.mark.parametrize("provider, label", [
    ({"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, "CUDA"),
    ({"providers": ["CPUExecutionProvider"], "fallback": "CUDA is not available"}, "CPU (fallback!)"),
    ({"delegate": "XNNPACK", "runtime": "litert"}, "XNNPACK"),
    ({"runtime": "litert"}, "litert"),
    ({}, ""),
    (None, ""),
])
def test_provider_label_names_what_really_ran(provider, label):
    assert render.provider_label(provider) == label


def test_table_cells_show_the_record_in_human_units():
    cells = render.table_cells(_record(batch=4, unstable=True))
    assert cells == ["cnn.onnx x4", "onnxruntime", "CPU", "int8", "2.0 KiB", "87.50%", "1234.5 us ~",
                     "1500.0 us", "810"]


def test_json_output_holds_every_record_as_its_dict():
    records = [_record(), _failure()]
    data = json.loads(render.to_json(records, command="bench"))
    assert data["command"] == "bench"
    assert data["results"] == [r.to_dict() for r in records]
    assert [type(record_from_dict(d)) for d in data["results"]] == [BenchRecord, BenchFailure]


def test_csv_output_has_one_flat_row_per_record_and_quotes_awkward_names():
    records = [_record(model='/m/a,"b".onnx'), _failure()]
    rows = list(csv.DictReader(io.StringIO(render.to_csv(records))))
    assert len(rows) == 2
    assert rows[0]["model"] == '/m/a,"b".onnx'
    assert rows[0]["p50_us"] == "1234.5" and rows[0]["provider"] == "CPU" and rows[0]["top1"] == "0.875"
    assert rows[1]["status"] == "error" and "edge-toolkit[keras]" in rows[1]["error"]
    assert render.to_csv([]) == ""


def _md_cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|")
    return re.split(r"(?<!\\)\|", line[1:-1])


def test_markdown_output_is_a_real_table_that_escapes_pipes_in_model_names():
    md = render.to_markdown([_record(model="/m/a|b.onnx"), _failure()], title="Bench")
    lines = md.splitlines()
    assert lines[0] == "## Bench"
    header, separator, row = lines[2], lines[3], lines[4]
    assert [c.strip() for c in _md_cells(header)] == list(render.TABLE_COLUMNS)
    assert _md_cells(separator) == ["---"] * 4 + ["---:"] * 5
    cells = [c.strip() for c in _md_cells(row)]
    assert len(cells) == len(render.TABLE_COLUMNS)
    assert cells[0] == r"a\|b.onnx"
    assert "- error: keras is not installed. Install it with: pip install 'edge-toolkit[keras]'" in lines


def _rich_text(table) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_the_rich_table_shows_markup_in_names_literally():
    # The model cell is the file name (a "/" would start a new path part), so "[/]" goes in the backend cell.
    text = _rich_text(render.rich_table([_record(model="/m/[bold]x.onnx", backend="[bold]x[/]")],
                                        title="pip install 'edge-toolkit[keras]'"))
    assert "[bold]x.onnx" in text
    assert "[bold]x[/]" in text
    assert "pip install 'edge-toolkit[keras]'" in text


def test_the_plain_table_shows_markup_in_names_literally():
    text = render.plain_table([_record(model="/m/[bold]x.onnx", backend="edge-toolkit[keras]")],
                              title="Bench [red]now[/]")
    assert "[bold]x.onnx" in text
    assert "edge-toolkit[keras]" in text
    assert "Bench [red]now[/]" in text
    assert "2.0 KiB" in text and "87.50%" in text


def test_the_plain_text_output_file_keeps_the_error_of_a_failed_pair():
    text = render.for_file([_record(), _failure()], Path("results.txt"))
    assert "pip install 'edge-toolkit[keras]'" in text


@pytest.mark.parametrize("name, check", [
    ("out.json", lambda t: json.loads(t)["results"][0]["status"] == "ok"),
    ("OUT.JSON", lambda t: json.loads(t)["results"][0]["status"] == "ok"),
    ("out.csv", lambda t: t.splitlines()[0].startswith("status,model,backend")),
    ("out.md", lambda t: t.startswith("## Benchmark\n\n| model |")),
    ("out.markdown", lambda t: t.startswith("## Benchmark\n\n| model |")),
    ("out.txt", lambda t: "Benchmark" in t and "cnn.onnx" in t and not t.lstrip().startswith(("{", "|", "#"))),
])
def test_for_file_picks_the_form_by_suffix(name, check):
    assert check(render.for_file([_record()], Path(name)))


# ============================================================================================ shapes
def test_a_shape_override_is_name_equals_dims():
    assert parse_shape_overrides(["x=1x128", "mask=2X3"]) == {"x": (1, 128), "mask": (2, 3)}


@pytest.mark.parametrize("item", ["x", "=1x2", "x=", "x=1xa", "x=1,2"])
def test_a_malformed_shape_override_is_not_name_equals_dims(item):
    with pytest.raises(UsageError, match="is not NAME=DIMS"):
        parse_shape_overrides([item])


@pytest.mark.parametrize("item, dim", [("image=0x28x28x1", 0), ("image=1x-3", -3)])
def test_a_zero_or_negative_dimension_is_named_as_such(item, dim):
    with pytest.raises(UsageError) as info:
        parse_shape_overrides([item])
    assert f"has a dimension of {dim}" in info.value.message
    assert "NAME=DIMS" not in info.value.message


def test_an_input_given_twice_is_refused():
    with pytest.raises(UsageError, match="gives input 'x' twice"):
        parse_shape_overrides(["x=1x2", "x=1x3"])


def test_a_dynamic_batch_takes_the_batch_size():
    specs = [TensorSpec("image", (None, 28, 28, 1), "float32")]
    assert resolve_shapes(specs, 8, {}) == {"image": (8, 28, 28, 1)}


def test_a_fixed_batch_refuses_another_batch_size():
    specs = [TensorSpec("image", (1, 28, 28, 1), "float32")]
    assert resolve_shapes(specs, 1, {}) == {"image": (1, 28, 28, 1)}
    with pytest.raises(UsageError, match="fixed batch of 1, so --batch 4 cannot apply"):
        resolve_shapes(specs, 4, {})


def test_a_fixed_batch_accepts_its_own_batch_size():
    specs = [TensorSpec("image", (4, 28, 28, 1), "float32")]
    assert resolve_shapes(specs, 4, {}) == {"image": (4, 28, 28, 1)}


def test_every_input_with_dynamic_dimensions_is_named_in_one_error():
    specs = [TensorSpec("serving_default_tokens:0", (None, None), "int64", dim_names=("batch", "seq")),
             TensorSpec("serving_default_mask:0", (None, None), "int64", dim_names=("unk__48", "unk__49")),
             TensorSpec("scale", (1,), "float32")]
    with pytest.raises(UsageError) as info:
        resolve_shapes(specs, 1, {})
    err = info.value
    assert "inputs 'serving_default_tokens:0' [batch, seq], 'serving_default_mask:0' [?, ?] have dynamic" in \
        err.message
    assert err.hint == "Give them with --shape tokens=1x<seq> --shape mask=1x<size>"


def test_a_short_name_override_fills_the_dynamic_dimensions():
    specs = [TensorSpec("serving_default_tokens:0", (None, None), "int64")]
    assert resolve_shapes(specs, 1, {"tokens": (1, 16)}) == {"serving_default_tokens:0": (1, 16)}


def test_an_override_must_keep_the_fixed_dimensions():
    specs = [TensorSpec("x", (None, 8), "float32")]
    with pytest.raises(UsageError, match=r"--shape x=1x9 does not fit the input's shape \[\?, 8\]"):
        resolve_shapes(specs, 1, {"x": (1, 9)})


def test_an_override_for_no_input_of_the_model_lists_its_inputs():
    specs = [TensorSpec("x", (None, 8), "float32")]
    with pytest.raises(UsageError) as info:
        resolve_shapes(specs, 1, {"y": (1, 8)})
    assert "names no input of this model: y" in info.value.message
    assert info.value.hint == "Its inputs: x"


def test_an_input_given_under_its_short_and_its_full_name_is_refused():
    specs = [TensorSpec("serving_default_tokens:0", (None, None), "int64")]
    with pytest.raises(UsageError):
        resolve_shapes(specs, 1, {"tokens": (1, 8), "serving_default_tokens:0": (1, 16)})


@pytest.mark.parametrize("name, short", [("serving_default_tokens:0", "tokens"), ("input:1", "input"),
                                         ("a:b", "a:b"), ("plain", "plain")])
def test_short_name_is_the_name_a_user_would_type(name, short):
    assert short_name(name) == short


# ============================================================================================ options
class ToyBackend(Backend):
    name = "toybk"
    formats = ("onnx",)
    options = (PluginOption("threads", int, 1, "worker threads"),
               PluginOption("fast", bool, False),
               PluginOption("mode", str, "auto", choices=("auto", "speed", "size")))

    def load(self, artifact, options):
        raise NotImplementedError


class BareBackend(Backend):
    name = "barebk"
    formats = ("onnx",)

    def load(self, artifact, options):
        raise NotImplementedError


def test_parse_pairs_reads_key_equals_value():
    assert parse_pairs(["threads=2", " mode =speed", "path=a=b", "empty="]) == {
        "threads": "2", "mode": "speed", "path": "a=b", "empty": ""}


@pytest.mark.parametrize("item", ["threads", "=2", " =2"])
def test_parse_pairs_refuses_an_item_that_is_not_key_equals_value(item):
    with pytest.raises(UsageError, match="is not KEY=VALUE"):
        parse_pairs([item])


def test_parse_pairs_refuses_a_key_given_twice():
    with pytest.raises(UsageError, match="gives 'threads' twice"):
        parse_pairs(["threads=1", "threads=2"])


def test_declared_defaults_fill_the_options_not_given():
    assert resolve_options(ToyBackend(), {}) == {"threads": 1, "fast": False, "mode": "auto"}
    assert resolve_options(ToyBackend(), {"threads": "4"}) == {"threads": 4, "fast": False, "mode": "auto"}


@pytest.mark.parametrize("text, value", [("true", True), ("false", False), ("1", True), ("0", False),
                                         ("yes", True), ("no", False), ("ON", True), ("Off", False)])
def test_a_bool_option_reads_the_usual_words(text, value):
    assert resolve_options(ToyBackend(), {"fast": text})["fast"] is value


def test_a_bool_option_refuses_other_words():
    with pytest.raises(UsageError, match="option fast='maybe' of backend toybk"):
        resolve_options(ToyBackend(), {"fast": "maybe"})


def test_an_int_option_that_is_not_a_number_names_the_option_and_the_plugin():
    with pytest.raises(UsageError) as info:
        resolve_options(ToyBackend(), {"threads": "two"})
    assert "option threads='two' of backend toybk" in info.value.message
    assert info.value.hint == "threads: worker threads"


def test_an_option_with_choices_refuses_any_other_value():
    assert resolve_options(ToyBackend(), {"mode": "speed"})["mode"] == "speed"
    with pytest.raises(UsageError, match="is not one of auto, speed, size"):
        resolve_options(ToyBackend(), {"mode": "fastest"})


def test_an_option_value_from_python_is_still_checked_against_its_choices():
    with pytest.raises(UsageError):
        resolve_options(ToyBackend(), {"mode": 3})


def test_an_unknown_option_suggests_the_nearest_declared_one():
    with pytest.raises(UnknownNameError) as info:
        resolve_options(ToyBackend(), {"thread": "2"})
    assert "unknown option of backend toybk 'thread'" in info.value.message
    assert "Did you mean 'threads'?" in info.value.hint


def test_a_plugin_without_options_refuses_any_key():
    with pytest.raises(UsageError, match="backend barebk takes no -o options"):
        resolve_options(BareBackend(), {"threads": "2"})
    assert resolve_options(BareBackend(), {}) == {}


# ============================================================================================ registries
class ToyDataset(Dataset):
    name = "toyds"

    def load(self, split):
        raise NotImplementedError


def _backends() -> Registry:
    return Registry(KINDS_BY_HOOK["register_backends"])


def test_a_dataset_given_to_the_backends_registry_is_refused_naming_hook_and_class():
    with pytest.raises(TypeError) as info:
        _backends().add(ToyDataset())
    text = str(info.value)
    assert text.startswith("register_backends got a ToyDataset")
    assert "not a toolkit.api.Backend" in text


def test_a_class_instead_of_an_instance_is_refused():
    with pytest.raises(TypeError, match=r"register_backends got the class ToyBackend, not an instance: "
                                        r"call register\(ToyBackend\(\)\)"):
        _backends().add(ToyBackend)


def test_a_backend_without_formats_is_refused():
    class NoFormats(Backend):
        name = "noformats"

        def load(self, artifact, options):
            raise NotImplementedError

    with pytest.raises(TypeError, match="register_backends got a NoFormats without `formats`"):
        _backends().add(NoFormats())


def test_a_backend_with_an_empty_list_of_formats_is_refused():
    class EmptyFormats(Backend):
        name = "emptyformats"
        formats = []  # type: ignore[assignment]

        def load(self, artifact, options):
            raise NotImplementedError

    with pytest.raises(TypeError, match="without `formats`"):
        _backends().add(EmptyFormats())


def test_a_name_with_spaces_is_refused():
    class Spaced(ToyBackend):
        name = "my backend"

    with pytest.raises(TypeError, match="whose name 'my backend' is not a word"):
        _backends().add(Spaced())


def test_a_name_registered_twice_names_both_owners():
    reg = _backends()
    reg.add(ToyBackend(), owner="plugin-a")
    with pytest.raises(UsageError, match=r"backend 'toybk' is registered twice \(by plugin-a and plugin-b\)"):
        reg.add(ToyBackend(), owner="plugin-b")
    assert reg.owner("toybk") == "plugin-a" and len(reg) == 1


def test_get_returns_the_registered_item_and_suggests_the_nearest_for_a_typo():
    reg = _backends()
    item = ToyBackend()
    reg.add(item, owner="p")
    assert reg.get("toybk") is item
    with pytest.raises(UnknownNameError) as info:
        reg.get("toybkk")
    assert info.value.message == "unknown backend 'toybkk'"
    assert "Did you mean 'toybk'?" in info.value.hint


def test_get_of_a_name_whose_plugin_failed_says_why_instead_of_unknown():
    reg = _backends()
    reg.unavailable["tensorrt"] = "plugin toolkit-trt failed to load (No module named 'tensorrt')"
    with pytest.raises(UsageError) as info:
        reg.get("tensorrt")
    assert not isinstance(info.value, UnknownNameError)
    assert "unknown" not in info.value.message
    assert info.value.message == ("backend 'tensorrt' is not loaded: plugin toolkit-trt failed to load "
                                  "(No module named 'tensorrt')")


# ============================================================================================ process boundary
@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([-128, -1, 0, 127], dtype=np.int8),
    np.array([[True, False], [False, True]]),
    np.array(3.5, dtype=np.float64),
    np.asfortranarray(np.arange(6, dtype=np.uint16).reshape(2, 3)),
    np.zeros((0, 5), dtype=np.int64),
], ids=["float32", "int8", "bool", "0-d", "fortran", "empty"])
def test_numpy_arrays_cross_the_process_boundary_exactly(array):
    back = loads(dumps(array))
    assert isinstance(back, np.ndarray)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


def test_nested_dicts_and_lists_with_arrays_round_trip():
    obj = {"outputs": {"y": np.array([1, 2], np.int8)}, "shapes": [[1, 2], [3]], "ok": True, "x": None,
           "scalar": np.float32(0.5), "names": {"b", "a"}}
    back = loads(dumps(obj))
    assert np.array_equal(back["outputs"]["y"], obj["outputs"]["y"]) and back["outputs"]["y"].dtype == np.int8
    assert back["shapes"] == [[1, 2], [3]] and back["ok"] is True and back["x"] is None
    assert back["scalar"] == 0.5 and back["names"] == ["a", "b"]


def test_the_encoding_is_plain_json_without_pickles():
    data = dumps({"a": np.arange(3, dtype=np.int8)})
    decoded = json.loads(data)
    assert set(decoded["a"]) == {"__ndarray__"}
    raw = base64.b64decode(decoded["a"]["__ndarray__"])
    assert raw.startswith(b"\x93NUMPY")
    assert b"\x80\x04" not in data and b"\x80\x05" not in data  # no pickle protocol header


def test_an_object_array_is_refused_on_both_sides():
    with pytest.raises(ValueError, match="allow_pickle"):
        dumps(np.array([{"evil": 1}], dtype=object))
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    smuggled = json.dumps({"__ndarray__": base64.b64encode(buf.getvalue()).decode("ascii")}).encode()
    with pytest.raises(ValueError, match="allow_pickle"):
        loads(smuggled)


def test_something_json_cannot_carry_is_refused_by_name():
    with pytest.raises(TypeError, match="cannot send a value of type bytes across the process boundary"):
        dumps({"raw": b"\x00"})


def test_the_quickstart_table_marks_unstable_timings_as_bench_does():
    from toolkit.quickstart import summary_cells

    row = {"artifact": "cnn.tflite", "backend": "tflite", "size_bytes": 2048, "accuracy": 0.9, "p50_us": 20.0,
           "p90_us": 40.0, "speedup_vs_fp32": 1.0, "unstable": True}
    assert summary_cells(row)[4] == "20.0 us ~"
    assert summary_cells({**row, "unstable": False})[4] == "20.0 us"


def test_the_peak_is_measured_each_time_and_the_weeks_best_for_these_cpus_is_kept(tmp_path):
    import json

    fresh = protocol.peak_gflops(str(tmp_path), seconds=0.05)
    assert fresh > 0
    (key,) = json.loads((tmp_path / "peak_gflops.json").read_text())
    assert f"cpus {protocol.compact_cpus(sorted(os.sched_getaffinity(0)))}" in key  # one figure per CPU set
    # A higher figure of this week (a quieter moment) is used: a busy moment's lower reading does not stick.
    (tmp_path / "peak_gflops.json").write_text(json.dumps({key: {"gflops": 1e6, "at": time.time()}}))
    assert protocol.peak_gflops(str(tmp_path), seconds=0) == 1e6
    # A week-old one is not: the fresh measurement replaces it.
    (tmp_path / "peak_gflops.json").write_text(json.dumps({key: {"gflops": 1e6, "at": time.time() - 8 * 86400}}))
    assert protocol.peak_gflops(str(tmp_path), seconds=0) < 1e6
    assert json.loads((tmp_path / "peak_gflops.json").read_text())[key]["gflops"] < 1e6
