"""Bad input gets one clear line with the fix, a non-zero exit, no traceback; a crash in a child is contained."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.child import run_in_child
from toolkit.cli import cli

from conftest import bench_json, run_cli


def one_line_error(result) -> str:
    """The CLI's stderr must be exactly one 'Error:' line."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def invoke():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args), catch_exceptions=False)


def test_a_corrupt_model_file(tmp_path, invoke):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + b"\xff" * 200)
    result = invoke("bench", str(bad))
    assert result.exit_code == 2
    assert "model.tflite on tflite:" in one_line_error(result) and "is not a valid tflite file" in result.stderr.lower()


def test_a_file_that_is_not_a_model(tmp_path, invoke):
    bad = tmp_path / "model.onnx"
    bad.write_text("<html>rate limited</html>")
    result = invoke("bench", str(bad))
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: model.onnx: '{bad}' is not a valid onnx file (it does not start "
                                      "the way onnx files do). Re-export the model, or check that the download finished")


def test_a_malformed_tflite_operator_is_refused_or_contained(artifacts, tmp_path):
    bad = run_in_child("malformed_models:tflite_with_invalid_operator_input", source=str(artifacts["tflite"]),
                       target=str(tmp_path / "bad.tflite"))
    proc, results = bench_json(bad, str(artifacts["tflite"]), "--runs", "5")
    assert results[0]["status"] == "error" and results[1]["status"] == "ok"
    assert "bad.tflite" in results[0]["error"]
    if "crashed" in results[0]["error"]:  # LiteRT builds that segfault on it: contained, exit 1
        assert proc.returncode == 1 and "signal 11" in results[0]["error"]
    else:  # LiteRT 2.3 refuses it while loading: bad input, exit 2
        assert proc.returncode == 2 and "ai-edge-litert cannot load" in results[0]["error"]


def test_unknown_backend_and_dataset_suggest_the_nearest(artifacts, invoke):
    result = invoke("bench", str(artifacts["onnx"]), "--backend", "onnxrt")
    assert result.exit_code == 2
    assert "unknown backend 'onnxrt'. Did you mean 'onnxruntime'?" in one_line_error(result)
    result = invoke("bench", str(artifacts["onnx"]), "--dataset", "fashionmnist")
    assert "Did you mean 'fashion-mnist'?" in one_line_error(result)
    result = invoke("train", "cnnn")
    assert "unknown model 'cnnn'. Did you mean 'cnn'?" in one_line_error(result)


def test_a_backend_that_cannot_run_the_format(artifacts, invoke):
    result = invoke("bench", str(artifacts["tflite"]), "--backend", "onnxruntime")
    assert result.exit_code == 2
    assert "onnxruntime runs onnx files, not tflite" in one_line_error(result)


def test_a_missing_runtime_names_the_pip_extra(artifacts):
    proc = run_cli("bench", str(artifacts["tflite"]), "--backend", "npu-sim",
                   env={"TOOLKIT_PLUGIN_MODULES": "missing_runtime_plugin"})
    assert proc.returncode == 2
    assert one_line_error(proc) == ("Error: cnn.tflite on npu-sim: the npu-sim runtime is not available: the npu_sim "
                                    "module is not installed. Install it with: pip install 'edge-toolkit[npu]'")


def test_wrong_input_shape_from_an_npz(artifacts, tmp_path, invoke):
    inputs = tmp_path / "x.npz"
    np.savez(inputs, image=np.zeros((1, 28, 28, 1), np.float32))
    result = invoke("bench", str(artifacts["onnx"]), "--inputs", str(inputs))
    assert result.exit_code == 2
    assert "has shape [1, 28, 28, 1], the model wants [?, 8, 8, 1]" in one_line_error(result)


def test_a_dataset_that_does_not_fit_the_model(artifacts, monkeypatch, tmp_path, invoke):
    folder = tmp_path / "fashion"
    folder.mkdir()
    # A real (tiny) IDX pair in the Fashion-MNIST layout: 28x28 images do not fit an 8x8 model.
    import gzip

    for prefix, n in (("train", 4), ("t10k", 4)):
        images = np.zeros((n, 28, 28), np.uint8).tobytes()
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)) + images)
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(n))
    monkeypatch.setenv("TOOLKIT_FASHION_MNIST_DIR", str(folder))
    result = invoke("bench", str(artifacts["tflite"]), "--dataset", "fashion-mnist", "--runs", "5")
    assert result.exit_code == 2
    assert ("cnn.tflite on tflite: dataset 'fashion-mnist' gives 'image' of shape [28, 28, 1] per sample, the model "
            "wants [8, 8, 1]") in one_line_error(result)


def test_conflicting_flags_are_refused(artifacts, tmp_path, invoke):
    inputs = tmp_path / "x.npz"
    np.savez(inputs, image=np.zeros((1, 8, 8, 1), np.float32))
    result = invoke("bench", str(artifacts["onnx"]), "--inputs", str(inputs), "--batch", "4")
    assert result.exit_code == 2
    assert "--inputs fixes the input shapes" in one_line_error(result)
    result = invoke("bench", str(artifacts["onnx"]), "--all-backends", "--backend", "reference")
    assert "contradict" in one_line_error(result)


def test_converting_to_the_same_format_or_over_the_source(artifacts, invoke):
    result = invoke("convert", str(artifacts["onnx"]), "--to", "onnx")
    assert result.exit_code == 2 and "is already in onnx format" in one_line_error(result)
    result = invoke("convert", str(artifacts["keras"]), "--to", "onnx", "--output", str(artifacts["keras"]))
    assert "would overwrite the source model" in one_line_error(result)


@pytest.mark.slow
def test_offline_cifar10_names_the_offline_alternatives(tmp_path, monkeypatch):
    # keras.datasets really tries to download here; this machine has no route to it.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    proc = run_cli("train", "cnn", "--dataset", "cifar10", "--epochs", "1", "--output", str(tmp_path / "out"),
                   env={"KERAS_HOME": str(tmp_path)})
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "cannot download CIFAR-10" in line and "fashion-mnist" in line and "digits" in line


def test_traceback_flag_and_debug_variable_show_the_stack(artifacts):
    proc = run_cli("--traceback", "bench", str(artifacts["onnx"]), "--backend", "onnxrt")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    proc = run_cli("bench", str(artifacts["onnx"]), "--backend", "onnxrt", env={"TOOLKIT_DEBUG": "1"})
    assert "Traceback" in proc.stderr


def test_a_backend_that_dies_by_a_signal_is_contained_and_the_others_carry_on(artifacts):
    proc, results = bench_json(str(artifacts["tflite"]), "--backend", "segfault", "--backend", "tflite",
                               "--runs", "5", env={"TOOLKIT_PLUGIN_MODULES": "segfault_backend"})
    assert proc.returncode == 1
    crashed, ok = results
    assert crashed["status"] == "error" and crashed["exit_code"] == 1
    assert crashed["error"].startswith("cnn.tflite on segfault: crashed while loading the model (signal 11, SIGSEGV)")
    assert ok["status"] == "ok" and ok["backend"] == "tflite"
    assert "Error: cnn.tflite on segfault: crashed while loading" in proc.stderr


def test_a_child_that_runs_past_its_timeout_is_killed():
    from toolkit.errors import ChildCrashedError

    with pytest.raises(ChildCrashedError) as err:
        run_in_child("slow_work:sleep", timeout_s=1.0, seconds=60)
    assert err.value.failure.timed_out
    assert err.value.one_line() == "its process timed out."


def test_a_child_over_its_memory_limit_fails_with_the_fix():
    from toolkit.child import ChildError

    with pytest.raises(ChildError) as err:
        run_in_child("slow_work:allocate", memory_mb=400, megabytes=1024)
    assert err.value.one_line() == ("ran out of memory under the limit of 400 MB (MemoryError: Unable to allocate "
                                    "1.00 GiB for an array with shape (1073741824,) and data type uint8). Raise it "
                                    "with --memory-limit MB")
    assert run_in_child("slow_work:allocate", memory_mb=2048, megabytes=16) == 16 * 1024 * 1024


def test_an_unreadable_path_is_one_line_not_a_traceback(artifacts, tmp_path, invoke):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("bench", str(artifacts["tflite"]), "--runs", "3", "--output", str(blocker / "out.json"))
    assert result.exit_code == 2
    assert "Check the path and its permissions" in one_line_error(result)


def test_inputs_that_are_not_an_npz(artifacts, tmp_path, invoke):
    inputs = tmp_path / "inputs.npz"
    inputs.write_text("x,y\n1,2\n")
    result = invoke("bench", str(artifacts["onnx"]), "--inputs", str(inputs))
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: cnn.onnx on onnxruntime: '{inputs}' is not an .npz file. Save inputs "
                                      "with numpy.savez(path, name=array)")


def test_traceback_on_a_failing_pair_shows_the_childs_stack(artifacts):
    proc = run_cli("--traceback", "bench", str(artifacts["tflite"]), "--backend", "segfault", "--runs", "3",
                   env={"TOOLKIT_PLUGIN_MODULES": "segfault_backend"})
    assert proc.returncode == 1
    assert proc.stderr.rstrip().splitlines()[-1].startswith("Error: cnn.tflite on segfault: crashed while loading")
    bad = run_cli("--traceback", "bench", str(artifacts["onnx"]), "--batch", "2", "--shape", "nope=1x2")
    assert bad.returncode == 2 and "Traceback" in bad.stderr and "--shape names no input" in bad.stderr


def test_calibration_data_of_the_wrong_shape_is_refused(artifacts, invoke):
    for model in (artifacts["keras"], artifacts["onnx"]):
        result = invoke("quantize", str(model), "--scheme", "int8", "--calibration", "fashion-mnist", "--output",
                        str(model.with_name("never.onnx" if model.suffix == ".onnx" else "never.tflite")))
        assert result.exit_code == 2
        assert ("calibration data 'fashion-mnist' has samples of shape [28, 28, 1], the model's input "
                "'image' wants [8, 8, 1]") in one_line_error(result)
        assert not model.with_name("never.onnx").exists() and not model.with_name("never.tflite").exists()


@pytest.mark.parametrize("args, line", [
    (("quantize", "m.onnx", "--samples", "0"),
     "Error: Invalid value for '--samples': 0 is not in the range x>=1. See 'toolkit quantize --help'."),
    (("convert", "m.onnx"), "Error: Missing option '--to'. See 'toolkit convert --help'."),
    (("convert", "m.onnx", "--to", "tflite", "--output", "{tmp}"),
     "Error: Invalid value for '--output': File '{tmp}' is a directory. See 'toolkit convert --help'."),
    (("bench", "m.onnx", "--run", "3"),
     "Error: No such option '--run'. Did you mean one of: '--runner', '--runs', '--warmup'? "
     "See 'toolkit bench --help'."),
    (("becnh",), "Error: No such command 'becnh'. Did you mean 'bench'? See 'toolkit --help'."),
    (("bench",), "Error: Missing argument 'MODELS...'. See 'toolkit bench --help'."),
])
def test_click_usage_errors_are_one_line(tmp_path, args, line):
    # Click's own usage errors used to print "Usage: ...", "Try ... for help." and a blank line first.
    folder = tmp_path / "adir.onnx"
    folder.mkdir()
    proc = run_cli(*(a.replace("{tmp}", str(folder)) for a in args))
    assert proc.returncode == 2
    assert one_line_error(proc) == line.replace("{tmp}", str(folder))
    assert "Usage:" not in proc.stderr and proc.stdout == ""


def test_a_memory_limit_below_the_minimum_is_one_line():
    proc = run_cli("bench", "m.onnx", "--memory-limit", "100")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line.startswith("Error: Invalid value for '--memory-limit': ") and line.endswith(
        ". See 'toolkit bench --help'.")


def test_a_name_added_to_the_message_later_cannot_split_the_line():
    from toolkit.errors import MAX_MESSAGE_CHARS, ModelFileError

    err = ModelFileError("'x' is not a valid onnx file", "Re-export the model")
    err.message = f"bad\nname.onnx -> out\x1b[2J.tflite: {err.message}"  # as operations.py names the step
    assert err.one_line() == ("bad\\nname.onnx -> out\\x1b[2J.tflite: 'x' is not a valid onnx file. "
                              "Re-export the model")
    err.message = "n" * 1000 + ": " + err.message
    assert len(err.one_line()) <= MAX_MESSAGE_CHARS + len(". Re-export the model")


def _truncated_keras(path):
    """A .keras-shaped zip (config.json and weights), cut short as an interrupted copy leaves it."""
    import zipfile

    whole = path.with_name("whole.keras")
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", '{"keras_version": "3.0.0"}')
        zf.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        zf.writestr("model.weights.h5", np.random.default_rng(0).bytes(20000))
    path.write_bytes(whole.read_bytes()[:5000])
    return path


def test_a_truncated_keras_file_is_named_as_such_not_as_missing(tmp_path):
    bad = _truncated_keras(tmp_path / "trunc.keras")
    proc = run_cli("bench", str(bad))
    assert proc.returncode == 2
    assert one_line_error(proc) == ("Error: trunc.keras on keras: 'trunc.keras' is not a complete .keras file (the "
                                    "zip archive is damaged or truncated). Re-save the model with model.save(...)")
    # The step's prefix names an output with a newline: escaped, still one line.
    proc = run_cli("convert", str(bad), "--to", "onnx", "--output", str(tmp_path / "a\nb.onnx"))
    assert proc.returncode == 2
    assert one_line_error(proc) == ("Error: trunc.keras -> a\\nb.onnx (converter keras-onnx): 'trunc.keras' is not a "
                                    "complete .keras file (the zip archive is damaged or truncated). Re-save the "
                                    "model with model.save(...)")


def test_the_keras_format_reads_a_truncated_file_as_damaged(tmp_path):
    from toolkit.errors import ModelFileError

    from toolkit_formats.keras_format import KerasFormat

    bad = _truncated_keras(tmp_path / "trunc.keras")
    with pytest.raises(ModelFileError) as err:
        KerasFormat().read_specs(bad)
    assert err.value.one_line() == ("'trunc.keras' is not a complete .keras file (the zip archive is damaged or "
                                    "truncated). Re-save the model with model.save(...)")
