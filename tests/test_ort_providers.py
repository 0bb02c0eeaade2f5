"""ONNX Runtime execution providers: which provider ran which nodes (from ORT's own profiler), the CUDA and
TensorRT -o options, a fallback as the record and the table show it, and real GPU runs where there is a GPU."""

from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import bench_json, run_cli
from device import device_python, loopback_device  # noqa: F401 - fixtures (tests/support/device.py)
from toolkit_onnxruntime import device

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _available() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def _tensorrt_missing() -> str | None:
    """Why a TensorRT benchmark cannot run here, or None when it can."""
    if CUDA not in _available():
        return f"no CUDA: onnxruntime offers {', '.join(_available())} (pip install onnxruntime-gpu on an NVIDIA GPU)"
    if TRT not in _available():
        return "this onnxruntime-gpu build has no TensorrtExecutionProvider"
    for lib in ("libnvinfer.so.10", "libnvinfer.so"):
        try:
            ctypes.CDLL(lib)
            return None
        except OSError:
            pass
    return "TensorRT's libnvinfer cannot be loaded (install TensorRT 10, or put its lib/ on LD_LIBRARY_PATH)"


needs_cuda = pytest.mark.skipif(CUDA not in _available(), reason=(
    "needs an NVIDIA GPU with onnxruntime-gpu: CUDAExecutionProvider is not among this onnxruntime's providers"))
no_cuda = pytest.mark.skipif(CUDA in _available(), reason="CUDA is available here, so nothing falls back")


def make_model(path: Path) -> Path:
    """A tiny Conv+Relu -> Reshape -> MatMul graph, fixed shapes (TensorRT needs them), random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.random((4, 1, 3, 3), dtype=np.float32), "W"),
               numpy_helper.from_array(np.zeros(4, np.float32), "B"),
               numpy_helper.from_array(rng.random((4 * 6 * 6, 5), dtype=np.float32), "M"),
               numpy_helper.from_array(np.array([1, -1], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "flat"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    graph = helper.make_graph(nodes, "conv_relu_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("ort_providers") / "conv.onnx")


def _run_once(session: device.DeviceSession) -> None:
    session.run({"x": np.ones((1, 1, 8, 8), np.float32)})


# ---------------------------------------------------------------------------------------------- nodes on CPU
@pytest.mark.slow  # a benchmark child: the fast tier keeps the pure tests
def test_a_cpu_record_counts_the_nodes_onnx_runtime_ran_on_each_provider(model):
    proc, (record,) = bench_json(str(model), "--backend", "onnxruntime", "--runs", "10")
    assert proc.returncode == 0, proc.stderr
    provider = record["provider"]
    assert provider["requested"] == "cpu" and provider["providers"] == [CPU]
    assert "fallback" not in provider and "provider_options" not in provider  # CPU takes none
    nodes = provider["nodes"]
    assert set(nodes) == {CPU}
    ops = nodes[CPU]
    assert sum(ops.values()) > 0 and all(isinstance(n, int) and n > 0 for n in ops.values())
    # What really ran after graph optimisation: the Relu is fused into the convolution (a FusedConv, or on x86
    # with AVX2 the NCHWc Conv with its ReorderOutput), so it is no node of its own.
    assert "Relu" not in ops and (ops.get("FusedConv") == 1 or ops.get("Conv") == 1), ops
    assert ops["MatMul"] == 1 and ops["Reshape"] == 1


def test_without_graph_optimisation_the_nodes_are_the_graph_as_written(model):
    session = device.open_session(str(model), 1, "cpu", {"graph_optimization": "disabled"})
    _run_once(session)
    assert session.describe()["nodes"] == {CPU: {"Conv": 1, "MatMul": 1, "Relu": 1, "Reshape": 1}}


def test_the_profile_is_made_once_and_its_file_deleted(model, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    session = device.open_session(str(model), 1, "cpu", {"graph_optimization": "extended"})
    _run_once(session)
    first = session.describe()
    assert first["nodes"][CPU].get("FusedConv") == 1 and "Relu" not in first["nodes"][CPU]
    assert list(tmp_path.iterdir()) == []  # the temporary folder and the profile JSON are gone
    assert session.describe() == first and session.nodes() is session.nodes()  # cached, not profiled again


def test_the_bench_callable_is_onnx_runtimes_own_bound_run(model):
    session = device.open_session(str(model), 1, "cpu", {})
    call = session.bench_callable({"x": np.ones((1, 1, 8, 8), np.float32)})
    assert call.func == session.session.run  # nothing added to the timed call
    assert session.nodes() is None  # the benchmark call is not what describe() profiles: run() is


def test_a_profile_that_cannot_be_made_leaves_nodes_out_and_fails_nothing(tmp_path):
    path = make_model(tmp_path / "gone.onnx")
    session = device.open_session(str(path), 1, "cpu", {})
    assert "nodes" not in session.describe()  # never run: nothing to profile on
    _run_once(session)
    path.unlink()  # the profiling session cannot load it now
    described = session.describe()
    assert described["providers"] == [CPU] and "nodes" not in described


def test_count_nodes_counts_each_node_once_per_provider_and_op():
    events = [{"cat": "Session", "name": "model_run", "args": {}},
              {"cat": "Node", "name": "a_fence_before", "args": {"op_name": "Conv", "provider": CUDA}},
              {"cat": "Node", "name": "a_kernel_time", "args": {"op_name": "Conv", "provider": CUDA}},
              {"cat": "Node", "name": "a_fence_after", "args": {"op_name": "Conv", "provider": CUDA}},
              {"cat": "Node", "name": "b_kernel_time", "args": {"op_name": "Conv", "provider": CUDA}},
              {"cat": "Node", "name": "s_kernel_time", "args": {"op_name": "Shape", "provider": CPU}},
              {"cat": "Node", "name": "s_kernel_time", "args": {"op_name": "Shape", "provider": CPU}}]
    assert device.count_nodes(events) == {CPU: {"Shape": 1}, CUDA: {"Conv": 2}}


# ---------------------------------------------------------------------------------------------- fallback
@pytest.mark.slow  # a benchmark child: the fast tier keeps the pure tests
@no_cuda
def test_cuda_on_a_cpu_only_build_falls_back_and_the_record_and_table_say_so(model, tmp_path):
    saved = tmp_path / "record.json"
    proc = run_cli("bench", str(model), "--backend", "onnxruntime", "--provider", "cuda", "--runs", "10",
                   "--output", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert "CPU (fallback!)" in proc.stdout  # the table's "runs on" column
    assert "Warning:" in proc.stderr and "CUDAExecutionProvider is not running" in proc.stderr
    (record,) = json.loads(saved.read_text())["results"]
    provider = record["provider"]
    assert provider["requested"] == "cuda" and provider["providers"] == [CPU]
    assert provider["fallback"].startswith("CUDAExecutionProvider is not running, CPUExecutionProvider runs instead")
    assert provider["provider_options"] == {CUDA: {"device_id": 0}}  # what was asked for, even though CPU ran
    assert set(provider["nodes"]) == {CPU}  # and where the nodes really went


@pytest.mark.slow
@no_cuda
def test_strict_provider_makes_a_fallback_an_error(model):
    proc = run_cli("bench", str(model), "--backend", "onnxruntime", "--provider", "cuda", "--runs", "10",
                   "--strict-provider", "--format", "json")
    assert proc.returncode == 1
    (failure,) = json.loads(proc.stdout)["results"]
    assert failure["status"] == "error"
    assert failure["error"].startswith(f"{model.name} on onnxruntime: --strict-provider: CUDAExecutionProvider is "
                                       "not running, CPUExecutionProvider runs instead")
    assert "drop --strict-provider" in failure["error"]


# ---------------------------------------------------------------------------------------------- provider_list
def test_provider_list_for_cpu_and_cuda():
    assert device.provider_list("cpu", {}) == [CPU]
    assert device.provider_list("cpu", {"trt_fp16": False, "trt_int8": False, "trt_cache": None,
                                        "cuda_device": 0}) == [CPU]  # the defaults
    assert device.provider_list("cuda", {"cuda_device": 1}) == [(CUDA, {"device_id": 1}), CPU]


def test_provider_list_for_tensorrt_passes_the_trt_options(tmp_path):
    cache = tmp_path / "engines"
    providers = device.provider_list("tensorrt", {"trt_fp16": True, "trt_int8": True, "trt_cache": str(cache),
                                                  "cuda_device": 2})
    assert providers == [
        (TRT, {"device_id": 2, "trt_fp16_enable": True, "trt_int8_enable": True, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": str(cache)}),
        (CUDA, {"device_id": 2}),
        CPU,
    ]
    assert device.provider_options(providers) == {TRT: providers[0][1], CUDA: {"device_id": 2}}
    assert not cache.exists()  # a pure function: the folder is made when a session uses it


def test_the_default_engine_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    def cache_path() -> str:
        return device.provider_list("tensorrt", {})[0][1]["trt_engine_cache_path"]

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path() == str(tmp_path / "xdg" / "edge-toolkit" / "tensorrt")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_path() == str(tmp_path / "home" / ".cache" / "edge-toolkit" / "tensorrt")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG spec says
    assert cache_path() == str(tmp_path / "home" / ".cache" / "edge-toolkit" / "tensorrt")
    opts = device.provider_list("tensorrt", {"trt_cache": "~/engines"})[0][1]
    assert opts["trt_engine_cache_path"] == str(tmp_path / "home" / "engines")


@pytest.mark.parametrize("provider, options, wrong", [
    ("cpu", {"trt_fp16": True}, "-o trt_fp16 is for --provider tensorrt, but the provider is cpu"),
    ("cuda", {"trt_int8": True}, "-o trt_int8 is for --provider tensorrt, but the provider is cuda"),
    ("cpu", {"trt_cache": "/tmp/x"}, "-o trt_cache is for --provider tensorrt, but the provider is cpu"),
    ("cpu", {"cuda_device": 1}, "-o cuda_device is for --provider cuda or --provider tensorrt, but the provider "
                                "is cpu"),
])
def test_a_gpu_option_the_provider_does_not_take_is_refused(provider, options, wrong):
    with pytest.raises(device.LoadError) as caught:
        device.provider_list(provider, options)
    assert str(caught.value) == wrong and caught.value.kind == "usage" and "drop -o" in caught.value.hint


def test_the_gpu_options_are_declared_and_take_true_and_false():
    from toolkit import plugins
    from toolkit.options import resolve_options

    backend = plugins.registries().backends.get("onnxruntime")
    resolved = resolve_options(backend, {"trt_fp16": "true", "trt_int8": "False", "cuda_device": "1"})
    assert resolved["trt_fp16"] is True and resolved["trt_int8"] is False and resolved["cuda_device"] == 1
    assert resolved["trt_cache"] is None
    assert resolve_options(backend, {})["trt_fp16"] is False


@pytest.mark.slow  # a benchmark child: the fast tier keeps the pure tests
def test_trt_fp16_on_cpu_is_refused_with_exit_2_and_one_line(model):
    proc = run_cli("bench", str(model), "--backend", "onnxruntime", "--provider", "cpu", "-o", "trt_fp16=true",
                   "--runs", "5")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"Error: {model.name} on onnxruntime: -o trt_fp16 is for --provider tensorrt, but the provider "
                     "is cpu. Add --provider tensorrt, or drop -o trt_fp16"], proc.stderr


# ---------------------------------------------------------------------------------------------- on a device
@pytest.mark.slow  # ssh, a device agent and a measuring process
def test_on_a_device_the_options_and_the_cache_folder_are_the_devices(model, loopback_device, device_python):
    # The device module runs there without the toolkit: the engine cache defaults to the device's own
    # XDG_CACHE_HOME, the profile is made there too, and its temporary file does not outlive the run.
    proc, (record,) = bench_json(str(model), "--runs", "10", "--provider", "tensorrt", "-o", "trt_fp16=true",
                                 "--target", f"ssh://{loopback_device.alias}", "--ssh-config",
                                 str(loopback_device.ssh_config), "--remote-python", str(device_python))
    assert proc.returncode == 0, proc.stderr
    provider = record["provider"]
    trt = provider["provider_options"][TRT]
    assert trt["trt_engine_cache_path"] == str(Path(loopback_device.cache_dir) / "edge-toolkit" / "tensorrt")
    assert trt["trt_fp16_enable"] is True
    if CUDA not in _available():
        assert provider["fallback"].startswith("TensorrtExecutionProvider is not running")
        assert set(provider["nodes"]) == {CPU}
        assert not (Path(loopback_device.cache_dir) / "edge-toolkit" / "tensorrt").exists()  # TensorRT never ran
    assert sum(n for ops in provider["nodes"].values() for n in ops.values()) > 0
    deadline = time.monotonic() + 10  # the agent removes its own folder once it is done; nothing else is left
    while list(Path(loopback_device.tmp_dir).iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(Path(loopback_device.tmp_dir).iterdir()) == []


# ---------------------------------------------------------------------------------------------- real GPUs
@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_a_real_cuda_benchmark_runs_its_nodes_on_cuda(model):
    proc, (record,) = bench_json(str(model), "--backend", "onnxruntime", "--provider", "cuda", "--runs", "20")
    assert proc.returncode == 0, proc.stderr
    provider = record["provider"]
    assert "fallback" not in provider, provider["fallback"]
    assert provider["providers"][0] == CUDA
    assert provider["provider_options"] == {CUDA: {"device_id": 0}}
    assert sum(provider["nodes"].get(CUDA, {}).values()) > 0, provider["nodes"]


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_a_real_tensorrt_benchmark_runs_on_tensorrt_and_caches_its_engine(model, tmp_path):
    missing = _tensorrt_missing()
    if missing:
        pytest.skip(missing)
    cache = tmp_path / "engines"
    proc, (record,) = bench_json(str(model), "--backend", "onnxruntime", "--provider", "tensorrt", "--runs", "20",
                                 "-o", f"trt_cache={cache}", "-o", "trt_fp16=true")
    assert proc.returncode == 0, proc.stderr
    provider = record["provider"]
    assert "fallback" not in provider, provider["fallback"]
    assert provider["providers"][0] == TRT
    assert provider["provider_options"][TRT]["trt_engine_cache_path"] == str(cache)
    assert provider["provider_options"][TRT]["trt_fp16_enable"] is True
    assert sum(provider["nodes"].get(TRT, {}).values()) > 0, provider["nodes"]
    assert [p for p in cache.iterdir() if p.is_file()], "TensorRT left no engine in its cache folder"
