"""Device profiles (checked on load, the user's own from TOOLKIT_TARGETS_PATH, URLs) and `toolkit targets check`
against them, on real model files."""

from __future__ import annotations

import json
from pathlib import Path

from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from toolkit import plugins
from toolkit.api import ProfileError, load_profile, target_from_dict
from toolkit.cli import cli
from toolkit.profiles import FIELDS, target_from_url

TESTDATA = Path(__file__).parents[1] / "toolkit" / "testdata"
SHIPPED = {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "android-arm64-phone", "x86-64-vnni-server",
           "x86-edge-box", "coral-dev-board", "cortex-m7-mcu"}
MINIMAL = 'name = "{name}"\narch = "aarch64"\nram_mb = 512\n'


def run_cli(*args: str, env: dict | None = None) -> SimpleNamespace:
    """The CLI in this process, without an interpreter's start-up per call: the same exit code, stdout and stderr
    (the model checks still read the file in a child process)."""
    result = CliRunner().invoke(cli, list(args), env=env)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def test_every_shipped_profile_loads_and_the_host_is_detected():
    targets = {t.name: t for t in plugins.registries().targets}
    assert SHIPPED | {"host"} <= set(targets)
    assert targets["coral-dev-board"].precisions == ["int8"] and "CONV_2D" in targets["coral-dev-board"].ops["tflite"]
    assert targets["cortex-m7-mcu"].weights_in_ram is False and targets["cortex-m7-mcu"].ram_mb == 0.3125
    assert targets["host"].detected and targets["host"].storage_mb > 0 and "tflite" in targets["host"].formats


@pytest.mark.parametrize("text, words", [
    ('name = "pi"\narch = "aarch64"\nram_mb = "lots"\n', ["pi.toml", "field 'ram_mb'", "number of MiB", "'lots'"]),
    ('name = "pi"\narch = "aarch64"\nram_mb = 4\nram = 4\n', ["pi.toml", "unknown field 'ram'", "ram_mb"]),
    ('name = "pi"\narch = "aarch64"\nram_mb = 4\nprecisions = ["int4"]\n', ["field 'precisions'", "'int4'"]),
    ('name = "pi"\narch = "aarch64"\nram_mb = 4\nprecisions = ["in8"]\n', ["did you mean 'int8'"]),
    ('name = "pi"\narch = "aarch64"\n', ["pi.toml", "missing field ram_mb"]),
    ('name = "pi"\narch = "aarch64"\nram_mb = 4\nconnection = { kind = "ssh" }\n', ["field 'connection'", "host"]),
    ('name = "pi"\narch = "aarch64"\nram_mb = 4\nconnection = { kind = "ssh", host = "x", prot = 22 }\n',
     ["unknown key 'prot'", "did you mean 'port'"]),
    ('name = "pi"\narch = "aarch64"\nram_mb = 4\ncores = 0\n', ["field 'cores'", "at least 1"]),
    ('name = "other"\narch = "aarch64"\nram_mb = 4\n', ["field 'name' is 'other'", "pi.toml"]),
    ('name = "pi"\narch = \n', ["pi.toml", "not valid TOML"]),
])
def test_a_bad_profile_names_its_file_and_field(tmp_path, text, words):
    path = tmp_path / "pi.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    for word in words:
        assert word in e.value.one_line()


def test_target_from_dict_checks_what_a_plugin_registers():
    assert target_from_dict({"name": "board", "arch": "armv7l", "ram_mb": 256}, "plugin x").ram_mb == 256.0
    with pytest.raises(ProfileError, match="plugin x: field 'isa' must be a list of names"):
        target_from_dict({"name": "board", "arch": "armv7l", "ram_mb": 256, "isa": "neon"}, "plugin x")


def test_the_docs_describe_every_profile_field():
    text = (Path(__file__).parents[1] / "docs" / "targets.md").read_text()
    missing = [f.name for f in FIELDS if f"`{f.name}`" not in text]
    assert not missing


def test_user_profiles_come_from_toolkit_targets_path_and_replace_shipped_ones(tmp_path):
    (tmp_path / "my-board.toml").write_text(MINIMAL.format(name="my-board"))
    (tmp_path / "raspberry-pi-4.toml").write_text(MINIMAL.format(name="raspberry-pi-4"))
    proc = run_cli("targets", "list", "--format", "json", env={"TOOLKIT_TARGETS_PATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    targets = {t["name"]: t for t in json.loads(proc.stdout)["targets"]}
    assert targets["my-board"]["ram_mb"] == 512 and targets["raspberry-pi-4"]["ram_mb"] == 512
    assert targets["raspberry-pi-4"]["source"] == str(tmp_path / "raspberry-pi-4.toml")


def test_a_bad_user_profile_stops_target_commands_only(tmp_path):
    (tmp_path / "broken.toml").write_text('name = "broken"\narch = "x"\nram_mb = -1\n')
    env = {"TOOLKIT_TARGETS_PATH": str(tmp_path)}
    proc = run_cli("targets", "show", "raspberry-pi-4", env=env)
    assert proc.returncode == 2
    assert f"{tmp_path / 'broken.toml'}: field 'ram_mb'" in proc.stderr and "Traceback" not in proc.stderr
    assert run_cli("plugins", env=env).returncode == 0


def test_an_unknown_target_gets_a_did_you_mean():
    proc = run_cli("targets", "show", "raspbery-pi-4")
    assert proc.returncode == 2 and "Did you mean 'raspberry-pi-4'" in proc.stderr


@pytest.mark.parametrize("url, connection", [
    ("ssh://pi@raspberrypi.local:2222", {"host": "raspberrypi.local", "user": "pi", "port": 2222}),
    ("ssh://MyPi", {"host": "MyPi"}),  # a Host alias keeps its case
    ("ssh://[fe80::1]:22", {"host": "fe80::1", "port": 22}),
])
def test_a_url_is_a_target_with_only_its_connection(url, connection):
    target = target_from_url(url)
    assert target.name == url and target.connection == {"kind": "ssh", "url": url, **connection}


@pytest.mark.parametrize("url", ["ssh://", "ssh://pi@host/path", "ssh://pi:secret@host", "ssh://host:99999",
                                 "ssh://host:0", "ssh://@host", "ssh://a b", "ssh://h;rm"])
def test_a_bad_url_is_refused(url):
    from toolkit.api import UsageError

    with pytest.raises(UsageError):
        target_from_url(url)


def check(model: Path, *targets: str, extra: tuple[str, ...] = ()) -> tuple[int, dict]:
    args = [a for t in targets for a in ("--target", t)]
    proc = run_cli("targets", "check", str(model), *args, *extra, "--format", "json")
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    return proc.returncode, {t["target"]: {c["name"]: c for c in t["checks"]} for t in report["targets"]}


def test_a_float_model_fails_on_the_edge_tpu_with_the_fix():
    code, report = check(TESTDATA / "tiny_fp32.tflite", "coral-dev-board", "raspberry-pi-4")
    assert code == 1
    edge = report["coral-dev-board"]
    assert edge["precision"]["status"] == "fail" and "--scheme int8" in edge["precision"]["fix"]
    assert edge["shapes"]["status"] == "fail" and "-o batch=1" in edge["shapes"]["fix"]  # a dynamic batch
    assert all(c["status"] in ("pass", "skip") for c in report["raspberry-pi-4"].values())


def test_the_memory_estimate_is_weights_plus_peak_activations():
    code, report = check(TESTDATA / "tiny_int8.tflite", "raspberry-pi-4")
    assert code == 0
    memory = report["raspberry-pi-4"]["memory"]
    assert memory["status"] == "pass" and "weights" in memory["detail"] and "peak activations" in memory["detail"]
    proc = run_cli("targets", "check", str(TESTDATA / "tiny_int8.tflite"), "--target", "raspberry-pi-4",
                   "--format", "json")
    footprint = json.loads(proc.stdout)["footprint"]
    assert footprint["ops"] == {"FULLY_CONNECTED": 1} and 0 < footprint["weights_bytes"] < 200
    # One sample: a 4-value int8 input and a 3-value int8 output (plus the float edges' tensors, if any).
    assert 7 <= footprint["peak_activation_bytes"] <= 64


def test_an_onnx_model_fails_the_format_check_of_a_tflite_only_target(tmp_path):
    from third_party_models import make_onnx_multi_input

    onnx = make_onnx_multi_input(tmp_path / "multi.onnx")
    code, report = check(onnx, "cortex-m7-mcu")
    assert code == 1 and report["cortex-m7-mcu"]["format"]["status"] == "fail"
    # No converter turns ONNX into TFLite: the fix goes back to the source model.
    assert "toolkit convert SOURCE --to tflite" in report["cortex-m7-mcu"]["format"]["fix"]
    assert "--to tflite -o batch=1" in report["cortex-m7-mcu"]["shapes"]["fix"]


def test_a_latency_budget_is_held_to_a_measured_result(tmp_path):
    model = TESTDATA / "tiny_int8.tflite"
    results = tmp_path / "results.json"
    record = {"status": "ok", "model": str(model), "backend": "tflite", "precision": "int8", "batch": 1,
              "target": "raspberry-pi-4", "latency_us": {"p50": 900.0, "p90": 1500.0}}
    results.write_text(json.dumps({"results": [record]}))
    code, report = check(model, "raspberry-pi-4", extra=("--results", str(results), "--latency-budget", "1"))
    assert code == 1 and report["raspberry-pi-4"]["latency"]["status"] == "fail"
    assert "p90 1.500 ms" in report["raspberry-pi-4"]["latency"]["detail"]
    code, report = check(model, "raspberry-pi-4", extra=("--results", str(results), "--latency-budget", "2"))
    assert code == 0 and report["raspberry-pi-4"]["latency"]["status"] == "pass"
    code, report = check(model, "raspberry-pi-5", extra=("--results", str(results), "--latency-budget", "2"))
    assert report["raspberry-pi-5"]["latency"]["status"] == "skip"  # measured on another board
    assert "--target raspberry-pi-5" in report["raspberry-pi-5"]["latency"]["fix"]


def test_check_refuses_a_damaged_model_in_one_line(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 8)
    proc = run_cli("targets", "check", str(bad), "--target", "raspberry-pi-4")
    assert proc.returncode == 2 and "not a valid TFLite file" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_refuses_a_target_that_runs_no_python():
    proc = run_cli("bench", str(TESTDATA / "tiny_int8.tflite"), "--target", "cortex-m7-mcu")
    assert proc.returncode == 2
    assert "runs no Python" in proc.stderr and "toolkit targets check" in proc.stderr
    proc = run_cli("bench", str(TESTDATA / "tiny_int8.tflite"), "--target", "android-arm64-phone")
    assert proc.returncode == 2 and "over 'adb'" in proc.stderr and "runner plugin" in proc.stderr


def test_bench_refuses_conflicting_flags():
    proc = run_cli("bench", str(TESTDATA / "tiny_int8.tflite"), "--target", "host", "--runner", "local")
    assert proc.returncode == 2 and "contradict" in proc.stderr
    proc = run_cli("bench", str(TESTDATA / "tiny_int8.tflite"), "--remote-python", "python3")
    assert proc.returncode == 2 and "--target" in proc.stderr


@pytest.fixture(scope="module")
def target_models(tmp_path_factory) -> dict[str, Path]:
    from toolkit.child import run_in_child

    folder = tmp_path_factory.mktemp("target-models")
    return {k: Path(v) for k, v in run_in_child("third_party_models:make_target_models", folder=str(folder)).items()}


def test_an_oversized_model_fails_on_the_microcontroller_with_the_fix(target_models):
    code, report = check(target_models["wide_mlp"], "cortex-m7-mcu")
    assert code == 1
    mcu = report["cortex-m7-mcu"]
    assert mcu["storage"]["status"] == "fail" and "of flash" in mcu["storage"]["detail"]
    assert "--scheme int8" in mcu["storage"]["fix"]
    assert mcu["shapes"]["status"] == "pass" and mcu["operators"]["status"] == "pass"  # fixed batch, TFLM ops


def test_the_int8_cnn_passes_for_the_raspberry_pi_4(target_models):
    code, report = check(target_models["cnn_int8"], "raspberry-pi-4", "coral-dev-board")
    assert all(c["status"] in ("pass", "skip") for c in report["raspberry-pi-4"].values())
    edge = report["coral-dev-board"]
    assert edge["precision"]["status"] == "pass"  # full int8
    assert code == 1 and edge["operators"]["status"] == "fail"  # SHAPE and friends from a dynamic batch


def test_bench_on_a_device_without_an_ssh_client_here_says_what_to_install(tmp_path):
    proc = run_cli("bench", str(TESTDATA / "tiny_int8.tflite"), "--target", "ssh://pi@board",
                   env={"PATH": str(tmp_path)})  # an empty folder: no ssh on PATH
    assert proc.returncode == 2 and "install openssh-client" in proc.stderr


def test_names_with_brackets_are_shown_as_written(tmp_path):
    (tmp_path / "rev2.toml").write_text(MINIMAL.format(name="rev2") + 'description = "Board [rev2] with [/] tag"\n')
    proc = run_cli("targets", "show", "rev2", env={"TOOLKIT_TARGETS_PATH": str(tmp_path)})
    assert "Board [rev2] with [/] tag" in proc.stdout
    proc = run_cli("targets", "check", str(TESTDATA / "tiny_int8.tflite"), "--target", "ssh://[fe80::1]:22")
    assert proc.returncode == 0 and "on ssh://[fe80::1]:22" in proc.stdout
