"""What a killed, interrupted or crashed command leaves behind: nothing. No file under a final name that did not
pass its check, no working file, no temporary folder, no process. The quantizer here (tests/support's `stuck`)
starts a process of its own, writes half a file and a temporary folder, then dies or hangs; real processes and
real signals throughout. tools/stress.py does the same to real TensorFlow conversions at random moments."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from toolkit.api import Manifest, TensorSpec, sha256_file
from toolkit.artifact import manifest_path
from toolkit.testing import tiny_onnx_model

from conftest import TOOLKIT, run_cli

CONTRACT = {"TOOLKIT_PLUGIN_MODULES": "contract_plugins"}


@pytest.fixture
def work(tmp_path) -> dict:
    """A model in its own folder, a private TMPDIR and a file where the quantizer says what it started."""
    folder = tmp_path / "models"
    folder.mkdir()
    model = tiny_onnx_model(folder / "tiny.onnx")
    manifest = Manifest(file=model.name, format="onnx", precision="fp32", sha256=sha256_file(model), model="tiny",
                        task="classification", inputs=[TensorSpec("x", (None, 4), "float32")],
                        outputs=[TensorSpec("y", (None, 3), "float32")], extra={"dataset": "tiny-tabular"})
    manifest_path(model).write_text(__import__("json").dumps(manifest.to_dict()))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    pids = tmp_path / "pids"
    env = {**CONTRACT, "TMPDIR": str(tmp), "STUCK_PIDS": str(pids)}
    return {"model": model, "folder": folder, "tmp": tmp, "pids": pids, "env": env,
            "before": sorted(p.name for p in folder.iterdir())}


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that will never reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def assert_nothing_left(work: dict) -> None:
    child, helper, scratch = work["pids"].read_text().split()
    assert wait_until(lambda: not alive(int(child)) and not alive(int(helper)), 5), "a process outlived the run"
    assert wait_until(lambda: sorted(p.name for p in work["folder"].iterdir()) == work["before"], 5), \
        sorted(p.name for p in work["folder"].iterdir())
    assert wait_until(lambda: not any(work["tmp"].iterdir()), 5), list(work["tmp"].iterdir())
    assert not Path(scratch).exists()


def start_quantize(work: dict, scheme: str) -> subprocess.Popen:
    return subprocess.Popen([TOOLKIT, "quantize", str(work["model"]), "--scheme", scheme, "--output",
                             str(work["folder"] / "out.onnx")], env={**os.environ, **work["env"]},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_converter_that_dies_is_named_with_its_step_and_leaves_nothing(work):
    proc = run_cli("quantize", str(work["model"]), "--scheme", "die8", "--output", str(work["folder"] / "out.onnx"),
                   env=work["env"])
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: tiny.onnx -> out.onnx (quantizer stuck): its process died (signal 9, SIGKILL) while quantizing. "
        "Something killed it, often the kernel's out-of-memory killer; --memory-limit MB makes it fail cleanly "
        "instead")
    assert_nothing_left(work)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGINT, 130),
                                       pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow),
                                       pytest.param(signal.SIGHUP, 129, marks=pytest.mark.slow)])
def test_a_command_killed_mid_conversion_leaves_no_file_and_no_process(work, sig, code):
    proc = start_quantize(work, "hang8")
    assert wait_until(lambda: work["pids"].exists() and len(work["pids"].read_text().split()) == 3, 60)
    proc.send_signal(sig)  # to the CLI alone, as `kill PID` does
    assert proc.wait(timeout=10) == code
    assert_nothing_left(work)
    if sig != signal.SIGKILL:
        stderr = proc.stderr.read()
        assert stderr.strip().endswith("Interrupted."), stderr


@pytest.mark.parametrize("gap", [0.0, pytest.param(0.05, marks=pytest.mark.slow)])
def test_a_second_ctrl_c_while_stopping_changes_nothing(work, gap):
    proc = start_quantize(work, "hang8")
    assert wait_until(lambda: work["pids"].exists() and len(work["pids"].read_text().split()) == 3, 60)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass
    assert proc.wait(timeout=10) == 130
    assert_nothing_left(work)


def test_ctrl_c_to_the_whole_group_stops_the_same_way(work):
    proc = subprocess.Popen([TOOLKIT, "quantize", str(work["model"]), "--scheme", "hang8", "--output",
                             str(work["folder"] / "out.onnx")], env={**os.environ, **work["env"]},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0)
    assert wait_until(lambda: work["pids"].exists() and len(work["pids"].read_text().split()) == 3, 60)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert proc.wait(timeout=10) == 130
    assert_nothing_left(work)


def test_a_missing_output_folder_is_refused_before_any_work(work):
    proc = run_cli("quantize", str(work["model"]), "--scheme", "fake8", "--output",
                   str(work["folder"] / "nowhere" / "out.onnx"), env=work["env"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"Error: the folder of --output '{work['folder'] / 'nowhere' / 'out.onnx'}' does "
                                   f"not exist. Create it first: mkdir -p {work['folder'] / 'nowhere'}")


@pytest.mark.slow
def test_a_quantized_model_is_not_quantized_again(work):
    proc = run_cli("quantize", str(work["model"]), "--scheme", "int8", "--quantizer", "onnxruntime-qdq",
                   "--output", str(work["folder"] / "q.onnx"), env=work["env"])
    assert proc.returncode == 0, proc.stderr
    again = run_cli("quantize", str(work["folder"] / "q.onnx"), "--quantizer", "onnxruntime-qdq", env=work["env"])
    assert again.returncode == 2
    assert again.stderr.strip() == "Error: 'q.onnx' is already quantized (int8). Quantize the float model it was made from"
    manifest_path(work["folder"] / "q.onnx").unlink()  # without a manifest, the file itself tells
    again = run_cli("quantize", str(work["folder"] / "q.onnx"), "--quantizer", "onnxruntime-qdq",
                    "--calibration", "tiny-tabular", env=work["env"])
    assert again.returncode == 2
    assert again.stderr.strip().endswith("'q.onnx' is already quantized (int8). Quantize the float model it was "
                                         "made from")
    assert sorted(p.name for p in work["folder"].iterdir()) == sorted(work["before"] + ["q.onnx"])


def declares_16_gib_of_external_data(folder: Path) -> Path:
    """A 200-byte model whose weight lives in a 16 GiB (sparse) file beside it."""
    from onnx import TensorProto, helper

    columns = 1024 ** 3  # 4 x 2^30 float32: 16 GiB
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, columns],
                         data_location=TensorProto.EXTERNAL)
    for key, value in {"location": "weights.bin", "offset": "0", "length": str(16 * 1024 ** 3)}.items():
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, columns])], [weight])
    model = folder / "big.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with open(folder / "weights.bin", "wb") as f:
        f.truncate(16 * 1024 ** 3)
    return model


@pytest.mark.slow
def test_a_model_declaring_16_gib_of_external_data_fails_in_its_child_not_in_the_cli(tmp_path):
    import sys

    model = declares_16_gib_of_external_data(tmp_path)
    script = Path(__file__).parent / "support" / "cli_peak_memory.py"
    proc = subprocess.run([sys.executable, "-P", str(script), "bench", str(model), "--backend", "onnxruntime",
                           "--backend", "reference", "--memory-limit", "4096"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    *errors, peak = proc.stderr.splitlines()
    assert int(peak.split()[1]) < 300 * 1024, peak  # the CLI process itself, in KiB
    assert [line.split(":")[0:2] for line in errors] == [["Error", " big.onnx on onnxruntime"],
                                                         ["Error", " big.onnx on reference"]], errors
    assert "16.0 GiB of external data" in errors[1]


def test_a_quickstart_replaces_the_files_of_the_run_before_and_nothing_else(tmp_path):
    from toolkit.quickstart import QuickstartInterrupted, run_quickstart

    earlier = ["results.json", "report.md", "metrics.json", "cnn.keras", "cnn.keras.manifest.json", "cnn.onnx",
               "cnn.onnx.manifest.json", "cnn_int8.tflite", "cnn_int8.failed.onnx"]
    for name in earlier + ["cnn.py", "notes.txt"]:
        (tmp_path / name).write_text("from an earlier run")

    def interrupted(description, total=None):
        raise KeyboardInterrupt  # Ctrl-C as the first step starts

    with pytest.raises(QuickstartInterrupted) as stopped:
        run_quickstart(tmp_path, dataset="digits", step=interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.py", "notes.txt"]
    assert stopped.value.during == "training cnn on digits" and stopped.value.exit_code == 130
    assert stopped.value.partial.artifacts == [] and stopped.value.partial.records == []


@pytest.mark.slow
def test_an_interrupted_quickstart_prints_what_finished_in_the_chosen_format(tmp_path):
    import json

    proc = subprocess.Popen([TOOLKIT, "quickstart", "--output", str(tmp_path), "--dataset", "digits", "--epochs",
                             "1", "--limit", "300", "--runs", "10", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "cnn.onnx.manifest.json"  # the first artifact: the others are being made
    assert wait_until(first.exists, 300), proc.stderr.read() if proc.poll() is not None else "no artifact"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    printed = json.loads(out)
    everything = ["cnn.onnx", "cnn_int8.onnx", "cnn.tflite", "cnn_int8.tflite"]
    done = printed["artifacts"]
    assert done and done == everything[:len(done)] and len(done) < len(everything)  # what finished, in order
    assert printed["stopped_during"].startswith(("converting", "quantizing"))
    assert printed["results"] == []  # no benchmark had started
    assert err.strip().endswith("Interrupted.")
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_concurrent_commands_into_one_output_leave_a_manifest_that_describes_the_file(work):
    """Four quantizations with different calibration seeds (so different bytes) race for one name."""
    import json

    out = work["folder"] / "race.onnx"
    for _ in range(2):
        procs = [subprocess.Popen([TOOLKIT, "quantize", str(work["model"]), "--quantizer", "onnxruntime-qdq",
                                   "--seed", str(seed), "--output", str(out), "--format", "json"],
                                  env={**os.environ, **work["env"]}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for seed in range(4)]
        done = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
        assert [code for code, _, _ in done] == [0, 0, 0, 0], [err for _, _, err in done]
        reported = {json.loads(stdout)["manifest"]["sha256"] for _, stdout, _ in done}
        on_disk = json.loads(manifest_path(out).read_text())
        assert on_disk["sha256"] == sha256_file(out) and on_disk["sha256"] in reported
        assert len(reported) > 1  # the race was real: the runs made different files
    assert sorted(p.name for p in work["folder"].iterdir()) == sorted(work["before"] + [out.name,
                                                                                        manifest_path(out).name])


@pytest.mark.parametrize("field, value, why", [
    ("extra", [], "its field 'extra' is list, not an object"),
    *(pytest.param(*case, marks=pytest.mark.slow) for case in [
        ("extra", {"dataset": 5}, "its field 'extra.dataset' is not text"),
        ("precision", ["int8"], "its field 'precision' is list, not text"),
        ("inputs", [{"name": "x", "shape": [None, "x", -5, 1e300], "dtype": "float32"}],
         "tensor 'x' has a shape that is not a list of sizes"),
        ("metrics", {"parity": {"passed": "yes"}}, "its field 'metrics.parity' has no true/false 'passed'"),
        ("seed", "0", "its field 'seed' is str, not an integer"),
    ]),
])
def test_a_manifest_with_a_field_of_the_wrong_type_is_ignored_with_a_note(work, field, value, why):
    import json

    from toolkit.artifact import Artifact

    model = work["model"]
    data = json.loads(manifest_path(model).read_text())
    data[field] = value
    manifest_path(model).write_text(json.dumps(data))
    opened = Artifact.open(model)
    assert opened.manifest is None
    assert opened.notes == [f"ignoring tiny.onnx.manifest.json: it is unreadable ({why}); delete it or make the "
                            "artifact again"]
    proc = run_cli("quantize", str(model), "--scheme", "fake8", "--calibration", "tiny-tabular", env=work["env"])
    assert proc.returncode == 0, proc.stderr
    assert f"Note: ignoring tiny.onnx.manifest.json: it is unreadable ({why})" in proc.stderr


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_an_empty_pythonpath_entry_does_not_bring_the_current_folder_into_children(work, tmp_path):
    (tmp_path / "onnxruntime.py").write_text("raise SystemExit('the onnxruntime.py in the current folder ran')\n")
    proc = subprocess.run([TOOLKIT, "bench", str(work["model"]), "--backend", "onnxruntime", "--runs", "3"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "") + ":"})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_working_files_of_a_command_killed_with_its_janitor_are_removed_by_the_next_one(work):
    """An out-of-memory kill of a whole container takes the janitor too: the next command cleans up."""
    import tempfile

    from toolkit import janitor

    gone = subprocess.Popen(["true"])  # a pid that has exited
    gone.wait()
    tag = f"{janitor.owner_tag().partition('-')[0]}-{gone.pid}"
    partial = work["folder"] / f".out.onnx.{tag}-1a2b3c4d.partial.onnx"
    partial.write_bytes(b"half a file")
    other_host = work["folder"] / ".out.onnx.ffffff-1-1a2b3c4d.partial.onnx"  # another machine's: left alone
    other_host.write_bytes(b"someone else's")
    scratch = Path(tempfile.mkdtemp(prefix=f"toolkit-child-{tag}-", dir=work["tmp"]))
    proc = run_cli("quantize", str(work["model"]), "--scheme", "fake8", "--output", str(work["folder"] / "out.onnx"),
                   env=work["env"])
    assert proc.returncode == 0, proc.stderr
    assert not partial.exists() and not scratch.exists() and other_host.exists()


@pytest.mark.slow
def test_external_data_outside_the_model_folder_is_never_read(tmp_path):
    from onnx import TensorProto, helper

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 48)
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3], data_location=TensorProto.EXTERNAL)
    weight.external_data.add(key="location", value="../secret.bin")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "outside",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    model = folder / "outside.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    proc = run_cli("bench", str(model), "--backend", "reference", "--runs", "3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("Error: outside.onnx on reference: initializer 'W' of 'outside.onnx' keeps its data "
                                   "in '../secret.bin', outside the model's folder. Keep the data files beside the "
                                   "model")


def test_an_output_ending_in_a_slash_is_refused_not_written_as_a_file(work):
    proc = run_cli("quantize", str(work["model"]), "--scheme", "fake8", "--output", "some.onnx/", env=work["env"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("Error: Invalid value for '--output': 'some.onnx/' ends in a slash, so it names a "
                                   "folder; name the file, e.g. some.onnx/model.onnx. See 'toolkit quantize --help'.")
