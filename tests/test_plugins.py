"""Plugin loading: entry points one by one, failures recorded and never fatal, allow and deny lists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from toolkit import plugins
from toolkit.errors import UnknownNameError
from toolkit.hookspecs import hookimpl

from conftest import run_cli

BUILTINS = {"core", "formats", "keras", "tflite", "onnxruntime", "reference", "targets"}


def make_broken_distribution(folder: Path) -> Path:
    """A real installed distribution (dist-info + entry point) whose plugin module raises at import."""
    (folder / "broken_toolkit_plugin.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    dist = folder / "broken_toolkit_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-toolkit-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[toolkit.plugins]\nbroken = broken_toolkit_plugin\n")
    return folder


def records_by_name() -> dict[str, plugins.PluginRecord]:
    return {r.name: r for r in plugins.loaded().records}


def test_builtin_plugins_load_through_entry_points():
    records = records_by_name()
    assert BUILTINS <= set(records)
    assert all(records[name].status == "ok" for name in BUILTINS)
    assert records["tflite"].registers == {"backends": ["tflite"]}
    assert "cnn" in records["keras"].registers["models"]
    assert {"fashion-mnist", "digits", "cifar10"} <= set(records["keras"].registers["datasets"])


def test_a_plugin_that_raises_at_import_is_recorded_and_the_others_keep_working(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_broken_distribution(tmp_path)))
    records = records_by_name()
    assert records["broken"].status == "failed"
    assert "RuntimeError: this plugin is broken on purpose" in records["broken"].error
    assert records["broken"].version == "1.0"
    assert all(records[name].status == "ok" for name in BUILTINS)
    assert "tflite" in plugins.registries().backends


def test_cli_shows_a_broken_plugin_as_failed_and_still_benchmarks(tmp_path, artifacts):
    folder = make_broken_distribution(tmp_path)
    env = {"PYTHONPATH": str(folder)}
    proc = run_cli("plugins", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert listed["broken"]["status"] == "failed"
    assert "broken on purpose" in listed["broken"]["error"]
    assert listed["onnxruntime"]["status"] == "ok"
    bench = run_cli("bench", str(artifacts["tflite"]), "--runs", "5", "--warmup", "1", "--format", "json", env=env)
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["results"][0]["status"] == "ok"


def test_allowlist_loads_only_the_named_plugins(monkeypatch):
    monkeypatch.setenv("TOOLKIT_LOAD_PLUGINS", "tflite,targets")
    assert set(records_by_name()) == {"core", "tflite", "targets"}  # the core's own local runner is always there
    assert plugins.registries().backends.names() == ["tflite"]
    assert plugins.registries().runners.names() == ["local", "ssh"]


def test_an_empty_allowlist_loads_no_plugin(monkeypatch):
    monkeypatch.setenv("TOOLKIT_LOAD_PLUGINS", "")
    assert [r.name for r in plugins.loaded().records] == ["core"]
    assert plugins.registries().formats.names() == [] and plugins.registries().backends.names() == []


def test_deny_list_blocks_a_plugin(monkeypatch):
    monkeypatch.setenv("TOOLKIT_BLOCK_PLUGINS", "reference")
    records = records_by_name()
    assert records["reference"].status == "blocked"
    assert "reference" not in plugins.registries().backends
    assert plugins.loaded().pm.is_blocked("reference")


def test_a_misspelled_hook_fails_validation_and_is_unregistered(monkeypatch):
    monkeypatch.setenv("TOOLKIT_PLUGIN_MODULES", "misspelled_hook_plugin")
    loaded = plugins.loaded()
    record = {r.name: r for r in loaded.records}["misspelled_hook_plugin"]
    assert record.status == "failed"
    assert "register_backend" in record.error
    assert loaded.pm.get_plugin("misspelled_hook_plugin") is None
    assert "tflite" in loaded.registries.backends


def test_a_plugin_whose_hook_raises_registers_nothing():
    class HalfBroken:
        @hookimpl
        def register_backends(self, register):
            from toolkit.interfaces import Backend

            class Fine(Backend):
                name = "fine"
                formats = ("onnx",)

                def load(self, artifact, options):
                    raise NotImplementedError

            register(Fine())
            raise ValueError("second backend is broken")

    plugins.reset([("half-broken", HalfBroken())])
    record = records_by_name()["half-broken"]
    assert record.status == "failed"
    assert "register_backends: ValueError: second backend is broken" == record.error
    assert "fine" not in plugins.registries().backends


def test_registering_a_name_twice_fails_the_second_plugin_only():
    from toolkit_tflite.backend import TFLiteBackend

    class Duplicate:
        @hookimpl
        def register_backends(self, register):
            register(TFLiteBackend())

    plugins.reset([("duplicate", Duplicate())])
    records = records_by_name()
    assert records["duplicate"].status == "failed"
    assert "registered twice" in records["duplicate"].error
    assert records["tflite"].status == "ok"


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(UnknownNameError) as err:
        plugins.registries().backends.get("onnxrt")
    assert "Did you mean 'onnxruntime'?" in err.value.one_line()
    with pytest.raises(UnknownNameError) as err:
        plugins.registries().datasets.get("fashion_mnist")
    assert "Did you mean 'fashion-mnist'?" in err.value.one_line()


def test_plugin_commands_join_the_cli():
    proc = run_cli("hello", "--name", "pi", env={"TOOLKIT_PLUGIN_MODULES": "command_plugin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hello pi"
    helptext = run_cli("--help", env={"TOOLKIT_PLUGIN_MODULES": "command_plugin"}).stdout
    assert "hello" in helptext and "Say hello" in helptext


def test_listing_plugins_imports_no_ml_framework():
    code = ("import sys; from toolkit import plugins; plugins.loaded(); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'onnxruntime', 'ai_edge_litert', 'onnx', 'tf2onnx') "
            "if m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_later_failing_hook_takes_back_what_earlier_hooks_registered():
    from toolkit.interfaces import Target

    class FailsLate:
        @hookimpl
        def register_targets(self, register):
            register(Target(name="half-board"))

        @hookimpl
        def register_models(self, register):
            raise RuntimeError("model zoo is broken")

    plugins.reset([("fails-late", FailsLate())])
    record = records_by_name()["fails-late"]
    assert record.status == "failed" and record.registers == {}
    assert "half-board" not in plugins.registries().targets
    assert "host" in plugins.registries().targets
