"""The plugin contract, as a plugin author and a user meet it: typed registration, choosing between plugins,
plugin options, checked outputs, errors that name the model and backend, formats added by a plugin. No training:
tiny real ONNX models, real ONNX Runtime, real child processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from toolkit import plugins
from toolkit.api import Manifest, TensorSpec, sha256_file
from toolkit.artifact import manifest_path
from toolkit.errors import UsageError
from toolkit.testing import plugin_registered, tiny_onnx_model

from conftest import bench_json, run_cli

CONTRACT = {"TOOLKIT_PLUGIN_MODULES": "contract_plugins"}


@pytest.fixture
def tiny(tmp_path) -> Path:
    return tiny_onnx_model(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_with_manifest(tiny) -> Path:
    """The tiny model with a manifest that names its training dataset, as `toolkit train` writes one."""
    manifest = Manifest(file=tiny.name, format="onnx", precision="fp32", sha256=sha256_file(tiny), model="tiny",
                        task="classification", inputs=[TensorSpec("x", (None, 4), "float32")],
                        outputs=[TensorSpec("y", (None, 3), "float32")], extra={"dataset": "tiny-tabular"})
    manifest_path(tiny).write_text(json.dumps(manifest.to_dict()))
    return tiny


# ---------------------------------------------------------------------------------------------- registration
def test_a_dataset_registered_as_a_backend_fails_its_plugin_at_load_time_naming_the_hook():
    import contract_plugins

    with plugin_registered(contract_plugins.DatasetAsBackend(), "slip") as loaded:
        record = {r.name: r for r in loaded.records}["slip"]
        assert record.status == "failed"
        assert "register_backends got a TinyTabular" in record.error
        assert "not a toolkit.api.Backend" in record.error
        assert "tiny-tabular" not in loaded.registries.datasets and "tiny-tabular" not in loaded.registries.backends


def test_the_cli_lists_a_plugin_with_a_wrong_item_as_failed_instead_of_crashing():
    proc = run_cli("plugins", env={"TOOLKIT_PLUGIN_MODULES": "contract_plugins"})
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("plugins", "--format", "json", env={"TOOLKIT_PLUGIN_MODULES": "misspelled_hook_plugin"})
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert listed["misspelled_hook_plugin"]["status"] == "failed"


def test_a_class_instead_of_an_instance_is_refused_with_the_fix():
    import contract_plugins

    with plugin_registered(contract_plugins.ClassNotInstance(), "classy") as loaded:
        record = {r.name: r for r in loaded.records}["classy"]
        assert record.status == "failed" and "register(WrongShapeBackend())" in record.error


def test_a_backend_of_a_plugin_that_failed_to_load_is_named_as_such(tiny):
    proc = run_cli("bench", str(tiny), "--backend", "broken", env={"TOOLKIT_PLUGIN_MODULES": "broken"})
    # "broken" is not importable here: the plugin fails to load, and --backend broken says so.
    assert proc.returncode == 2
    assert "plugin broken failed to load" in proc.stderr and "unknown backend" not in proc.stderr


def test_a_blocked_plugin_says_why_and_its_backend_is_not_unknown(tiny):
    proc = run_cli("plugins", env={"TOOLKIT_BLOCK_PLUGINS": "reference"})
    assert "blocked: listed in TOOLKIT_BLOCK_PLUGINS" in proc.stdout
    proc = run_cli("bench", str(tiny), "--backend", "reference", env={"TOOLKIT_BLOCK_PLUGINS": "reference"})
    assert proc.returncode == 2 and "plugin reference is blocked" in proc.stderr


def test_plugin_text_is_shown_as_written_not_as_markup():
    proc = run_cli("plugins", env={"TOOLKIT_PLUGIN_MODULES": "missing_runtime_plugin"})
    assert "'edge-toolkit[npu]')" in proc.stdout  # rich would have eaten [npu] as markup


def test_plugin_registered_works_for_an_installed_plugin_and_leaves_it_installed():
    import toolkit_tflite

    with plugin_registered(toolkit_tflite, "tflite-again") as loaded:
        assert "tflite" in loaded.registries.backends
        assert {r.name: r for r in loaded.records}["tflite-again"].status == "duplicate"
    assert "tflite" in plugins.registries().backends


# ---------------------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("backend,message", [
    ("wrong-shape", "output 'y' has shape [1, 2], the model declares [?, 3]"),
    ("float64", "output 'y' has dtype float64, the model declares float32"),
])
def test_a_backend_that_returns_wrong_outputs_is_an_error_never_a_number(tiny, backend, message):
    proc, results = bench_json(str(tiny), "--backend", backend, "--runs", "5", env=CONTRACT)
    assert proc.returncode == 1
    (record,) = results
    assert record["status"] == "error" and "latency_us" not in record
    assert record["error"].startswith(f"tiny.onnx on {backend}: backend {backend} returned wrong outputs")
    assert message in record["error"]


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_answers_for_part_of_a_batch_are_an_error_in_bench_and_evaluation(tiny):
    proc, results = bench_json(str(tiny), "--backend", "partial", "--batch", "5", "--runs", "5", env=CONTRACT)
    assert proc.returncode == 1 and "output 'y' has 1 rows for a batch of 5" in results[0]["error"]
    proc, results = bench_json(str(tiny), "--backend", "partial", "--dataset", "tiny-tabular", env=CONTRACT)
    assert proc.returncode == 1 and "rows for a batch of 64" in results[0]["error"]


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_a_wrong_shape_with_a_dataset_gives_no_accuracy(tiny):
    proc, results = bench_json(str(tiny), "--backend", "wrong-shape", "--dataset", "tiny-tabular", env=CONTRACT)
    assert proc.returncode == 1 and results[0]["status"] == "error"
    proc, results = bench_json(str(tiny), "--backend", "onnxruntime", "--dataset", "tiny-tabular", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    assert results[0]["evaluation"]["top1"] == 1.0  # the dataset is labelled by this very model


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_an_error_inside_a_backend_names_the_model_and_the_backend(tiny):
    proc = run_cli("bench", str(tiny), "--backend", "keyerror", env=CONTRACT)
    assert proc.returncode == 1
    assert "Error: tiny.onnx on keyerror: KeyError: 'does_not_exist'" in proc.stderr


# ---------------------------------------------------------------------------------------------- choosing
@pytest.mark.slow
def test_two_quantizers_for_one_scheme_the_rule_picks_and_says_so(tiny_with_manifest):
    proc = run_cli("quantize", str(tiny_with_manifest), "--format", "json", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    assert "using quantizer copy-int8 (highest priority, 20); also possible: onnxruntime-qdq" in proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["producer"]["quantizer"] == "copy-int8"
    assert manifest["quantization"]["calibration"]["dataset"] == "tiny-tabular"  # from the source's manifest

    out = tiny_with_manifest.with_name("ort.onnx")
    proc = run_cli("quantize", str(tiny_with_manifest), "--quantizer", "onnxruntime-qdq", "--output", str(out),
                   "--format", "json", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["producer"]["quantizer"] == "onnxruntime-qdq" and manifest["metrics"]["parity"]["passed"]


@pytest.mark.slow
def test_a_plugin_scheme_is_reachable_and_a_misspelled_one_gets_a_suggestion(tiny_with_manifest):
    proc = run_cli("quantize", str(tiny_with_manifest), "--scheme", "fake8", "--format", "json", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["manifest"]["quantization"]["scheme"] == "fake8"
    proc = run_cli("quantize", str(tiny_with_manifest), "--scheme", "imt8", env=CONTRACT)
    assert proc.returncode == 2 and "unknown scheme 'imt8'. Did you mean 'int8'?" in proc.stderr
    proc = run_cli("quantize", "--list-schemes", env=CONTRACT)
    assert "fake8" in proc.stdout and "copy-int8" in proc.stdout and "onnxruntime-qdq" in proc.stdout


def test_without_a_manifest_naming_data_calibration_must_be_given(tiny):
    proc = run_cli("quantize", str(tiny), "--quantizer", "onnxruntime-qdq", env=CONTRACT)
    assert proc.returncode == 2 and "Pass --calibration DATASET" in proc.stderr
    assert not tiny.with_name("tiny_int8.onnx").exists()


@pytest.mark.slow
def test_plugin_options_are_validated_passed_and_recorded(tiny_with_manifest):
    base = ["quantize", str(tiny_with_manifest), "--quantizer", "onnxruntime-qdq"]
    proc = run_cli(*base, "-o", "per_chanel=false", env=CONTRACT)
    assert proc.returncode == 2 and "Did you mean 'per_channel'?" in proc.stderr
    proc = run_cli(*base, "-o", "per_channel=maybe", env=CONTRACT)
    assert proc.returncode == 2 and "per_channel='maybe'" in proc.stderr
    proc = run_cli(*base, "-o", "activations=int8", "-o", "per_channel=no", "--format", "json", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["extra"]["options"] == {"activations": "int8", "weights": "int8", "per_channel": False,
                                           "method": "minmax", "quant_format": "qdq", "float_preprocessing": True}
    assert manifest["quantization"]["weights"] == "int8 per-tensor"


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_backend_options_reach_the_backend_and_bad_ones_stop_before_any_run(tiny):
    proc, results = bench_json(str(tiny), "-o", "graph_optimization=basic", "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    proc, _ = bench_json(str(tiny), "-o", "graph_optimisation=basic")
    assert proc.returncode == 2 and "has the option 'graph_optimisation'" in proc.stderr
    proc, _ = bench_json(str(tiny), "-o", "onnxruntime.graph_optimization=fastest")
    assert proc.returncode == 2 and "not one of disabled, basic, extended, all" in proc.stderr


def test_options_are_listed_where_they_apply():
    assert "onnxruntime: graph_optimization" in run_cli("bench", "--help").stdout
    assert "onnxruntime-qdq: per_channel=bool" in run_cli("quantize", "--help").stdout
    assert "-o per_channel=bool" in run_cli("plugins", "--verbose").stdout


# ---------------------------------------------------------------------------------------------- formats, selection
def test_a_plugin_format_is_accepted_by_bench_with_no_change_to_the_core(tmp_path):
    from linear_format_plugin import write_linz

    model = write_linz(tmp_path / "model.linz")
    proc = run_cli("bench", str(model))
    assert proc.returncode == 2 and "not a recognised model file" in proc.stderr
    proc, results = bench_json(str(model), "--runs", "5", env={"TOOLKIT_PLUGIN_MODULES": "linear_format_plugin"})
    assert proc.returncode == 0, proc.stderr
    (record,) = results
    assert (record["format"], record["backend"], record["precision"]) == ("linz", "linz-numpy", "fp32")
    assert record["inputs"] == {"features": [1, 5]}


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_mixed_formats_run_every_possible_pair_and_list_the_skipped(tiny, tmp_path):
    from toolkit.testing import tiny_tflite_model

    tfl = tiny_tflite_model(tmp_path)
    proc, results = bench_json(str(tiny), str(tfl), "--backend", "tflite", "--backend", "onnxruntime", "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    ran = {(Path(r["model"]).name, r["backend"]) for r in results if r["status"] == "ok"}
    skipped = {(Path(r["model"]).name, r["backend"]) for r in results if r["status"] == "skipped"}
    assert ran == {("tiny.onnx", "onnxruntime"), ("tiny_fp32.tflite", "tflite")}
    assert skipped == {("tiny.onnx", "tflite"), ("tiny_fp32.tflite", "onnxruntime")}
    proc = run_cli("bench", str(tiny), str(tfl), "--backend", "tflite", "--backend", "onnxruntime", "--runs", "5")
    assert "Skipped: tiny.onnx on tflite: tflite runs tflite files, not onnx" in proc.stderr


def test_a_model_that_no_named_backend_can_run_is_an_error(tiny):
    proc, results = bench_json(str(tiny), "--backend", "tflite")
    assert proc.returncode == 2 and results[0]["status"] == "error"


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_a_negative_priority_backend_is_never_the_silent_default(tiny):
    proc = run_cli("bench", str(tiny), env={"TOOLKIT_BLOCK_PLUGINS": "onnxruntime"})
    assert proc.returncode == 2
    assert "never chosen by default" in proc.stderr and "--backend reference" in proc.stderr
    proc, results = bench_json(str(tiny), "--backend", "reference", "--threads", "1", "--runs", "5",
                               env={"TOOLKIT_BLOCK_PLUGINS": "onnxruntime"})
    assert proc.returncode == 0, proc.stderr
    assert results[0]["provider"]["blas_threads_limited"] is True


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_all_backends_says_which_it_leaves_out(tiny):
    proc, results = bench_json(str(tiny), "--all-backends", "--runs", "5", env={"TOOLKIT_PLUGIN_MODULES": ""})
    assert proc.returncode == 0, proc.stderr
    statuses = {r["backend"]: r["status"] for r in results}
    assert statuses["onnxruntime"] == "ok" and statuses["reference"] == "ok"


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_the_reference_backend_reports_a_malformed_graph_as_a_model_file_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    proc = run_cli("bench", str(path), "--backend", "reference")
    assert proc.returncode == 2, proc.stderr
    assert "reads 'nowhere', which no graph input, initializer or earlier node provides" in proc.stderr
    assert "internal error" not in proc.stderr


# ---------------------------------------------------------------------------------------------- process boundary
@pytest.mark.slow
def test_the_child_reports_its_own_peak_memory_not_the_parents(tiny):
    ballast = np.ones(400 * 1024 * 1024 // 8)  # 400 MB touched in this process before the child starts
    proc, results = bench_json(str(tiny), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["peak_rss_mb"] < 300, results[0]["peak_rss_mb"]
    del ballast


@pytest.mark.slow
def test_code_beside_the_model_is_never_imported_by_a_child(tiny):
    (tiny.parent / "numpy.py").write_text("raise SystemExit('the numpy.py beside the model was imported')\n")
    (tiny.parent / "toolkit").mkdir()
    (tiny.parent / "toolkit" / "__init__.py").write_text("raise SystemExit('a toolkit/ folder was imported')\n")
    import subprocess

    from conftest import TOOLKIT

    proc = subprocess.run([TOOLKIT, "bench", tiny.name, "--runs", "5", "--format", "json"], cwd=tiny.parent,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "ok"
    proc = subprocess.run([TOOLKIT, "quantize", tiny.name, "--quantizer", "onnxruntime-qdq", "--calibration",
                           "tiny-tabular"], cwd=tiny.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **CONTRACT})
    assert proc.returncode == 0, proc.stderr


def test_traceback_is_accepted_after_the_subcommand(tiny):
    proc = run_cli("bench", str(tiny), "--backend", "keyerror", "--traceback", env=CONTRACT)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_a_misspelled_command_gets_a_suggestion():
    proc = run_cli("becnh")
    assert proc.returncode == 2 and "Did you mean 'bench'?" in proc.stderr


def test_train_help_lists_the_model_families():
    out = run_cli("train", "--help").stdout
    assert "Model families" in out and "cnn" in out and "digits" in out


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_markdown_output_is_a_markdown_table(tiny, tmp_path):
    out = tmp_path / "r.md"
    proc = run_cli("bench", str(tiny), "--runs", "5", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[2].startswith("| model | backend |") and lines[3].startswith("|---|")
    assert "KiB" in lines[4] or " B " in lines[4]


def test_unknown_runner_gets_a_suggestion(tiny):
    proc = run_cli("bench", str(tiny), "--runner", "locl")
    assert proc.returncode == 2 and "Did you mean 'local'?" in proc.stderr


def test_registering_through_the_api_checks_types_in_process():
    import contract_plugins

    with plugin_registered(contract_plugins.GoodPlugin(), "good") as loaded:
        assert "copy-int8" in loaded.registries.quantizers
        with pytest.raises(UsageError, match="unknown backend 'wrong-shap'"):
            loaded.registries.backends.get("wrong-shap")


@pytest.mark.slow
def test_a_result_that_changes_the_answers_is_never_published_under_its_name(tiny_with_manifest):
    out = tiny_with_manifest.with_name("scrambled.onnx")
    before = sorted(p.name for p in out.parent.iterdir())
    proc = run_cli("quantize", str(tiny_with_manifest), "--scheme", "scramble8", "--output", str(out), env=CONTRACT)
    assert proc.returncode == 1
    assert "'scrambled.onnx' does not match its source 'tiny.onnx' on tiny-tabular:test[:400]" in proc.stderr
    assert "keep the rejected file for inspection with --keep-failed" in proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == before  # nothing published, no working file left

    proc = run_cli("quantize", str(tiny_with_manifest), "--scheme", "scramble8", "--output", str(out),
                   "--keep-failed", env=CONTRACT)
    assert proc.returncode == 1
    assert "kept as scrambled.failed.onnx, marked failed in its manifest" in proc.stderr
    assert not out.exists() and not manifest_path(out).exists()
    kept = json.loads(manifest_path(out.with_name("scrambled.failed.onnx")).read_text())
    assert kept["metrics"]["parity"]["passed"] is False and kept["file"] == "scrambled.failed.onnx"
    bench = run_cli("bench", str(out.with_name("scrambled.failed.onnx")), "--runs", "3", env=CONTRACT)
    assert bench.returncode == 0, bench.stderr
    assert ("Note: scrambled.failed.onnx: scrambled.failed.onnx failed its check against tiny.onnx: its answers "
            "differ from its source's") in bench.stderr
    assert not [p for p in out.parent.iterdir() if ".partial" in p.name]


@pytest.mark.slow
def test_the_core_writes_the_manifest_with_specs_read_from_the_file(tiny_with_manifest):
    proc = run_cli("quantize", str(tiny_with_manifest), "--quantizer", "onnxruntime-qdq", "--format", "json",
                   env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert [i["name"] for i in manifest["inputs"]] == ["x"] and [o["name"] for o in manifest["outputs"]] == ["y"]
    assert manifest["producer"]["plugin"] == "onnxruntime" and manifest["task"] == "classification"
    assert manifest["source"]["sha256"] == sha256_file(tiny_with_manifest)
    assert "QuantizeLinear" in manifest["extra"]["ops"]  # what the ONNX format plugin's describe() adds
    assert manifest["sha256"] == sha256_file(tiny_with_manifest.with_name("tiny_int8.onnx"))


# ---------------------------------------------------------------------------------------------- tasks
@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_a_regression_dataset_is_scored_with_mae_and_rmse_not_accuracy(tiny):
    proc, results = bench_json(str(tiny), "--dataset", "tiny-regression", "--runs", "5", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    evaluation = results[0]["evaluation"]
    assert evaluation["task"] == "regression" and "top1" not in evaluation
    assert evaluation["mae"] == pytest.approx(0.5, abs=1e-5) and evaluation["rmse"] == pytest.approx(0.5, abs=1e-5)
    assert "rmse 0.5" in run_cli("bench", str(tiny), "--dataset", "tiny-regression", "--runs", "5", env=CONTRACT).stdout


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_a_model_with_two_inputs_is_evaluated_on_the_output_its_dataset_names(tmp_path):
    from toolkit.testing import tiny_onnx_two_inputs

    model = tiny_onnx_two_inputs(tmp_path / "two.onnx")
    proc, results = bench_json(str(model), "--shape", "a=1x6", "--shape", "b=1x6", "--dataset", "two-input-sum",
                               "--runs", "5", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    assert results[0]["evaluation"]["samples"] == 50 and results[0]["evaluation"]["mae"] < 1e-6


@pytest.mark.slow
def test_a_quantized_regression_model_is_checked_on_every_output_by_its_error(tiny_with_manifest):
    manifest = json.loads(manifest_path(tiny_with_manifest).read_text())
    manifest.update(task="regression", extra={"dataset": "tiny-regression"})
    manifest_path(tiny_with_manifest).write_text(json.dumps(manifest))
    # Per-tensor weights: on this 4x3 random layer they keep the error at 6% of the spread (per-channel: 12%).
    proc = run_cli("quantize", str(tiny_with_manifest), "--quantizer", "onnxruntime-qdq", "--samples", "400",
                   "-o", "per_channel=false", "--format", "json", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    parity = json.loads(proc.stdout)["manifest"]["metrics"]["parity"]
    assert parity["rule"] == "error <= 0.1 x the source's spread"
    assert set(parity["outputs"]) == {"y"} and parity["outputs"]["y"]["nrmse"] < 0.1


def test_a_backend_that_answers_for_part_of_a_batch_is_caught(tmp_path):
    """An output whose first dimension follows the batch must have one row per input row."""
    import contract_plugins

    class PartialSession(contract_plugins.NumpySession):
        def run(self, inputs):
            return {"y": super().run(inputs)["y"][:1]}

    class Partial(contract_plugins.TwistedBackend):
        name = "partial"

        def load(self, artifact, options):
            return PartialSession(artifact.path, "")

    from toolkit.testing import assert_backend_conforms

    with pytest.raises(AssertionError, match="output 'y' has 1 rows for a batch of 5"):
        assert_backend_conforms(Partial(), tiny_onnx_model(tmp_path / "tiny.onnx"), reference=None)


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_the_reference_backend_refuses_what_its_kernels_do_not_cover_instead_of_guessing(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2])], "pool3d",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3, 3])])
    path = tmp_path / "pool3d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    proc, results = bench_json(str(path), "--backend", "reference", "--runs", "3")
    assert proc.returncode == 2 and "does not implement MaxPool (3-D; 1 node: #0)" in results[0]["error"]
    proc, results = bench_json(str(path), "--all-backends", "--runs", "3", env={"TOOLKIT_PLUGIN_MODULES": ""})
    assert proc.returncode == 0, proc.stderr
    assert {r["backend"]: r["status"] for r in results}["reference"] == "skipped"


def test_a_run_where_every_pair_was_skipped_is_not_a_success(tiny):
    proc = run_cli("bench", str(tiny), "--provider", "cuda", "--backend", "reference")
    assert proc.returncode == 2 and "has no provider 'cuda'" in proc.stderr


def test_an_output_file_that_cannot_be_written_is_refused_before_anything_runs(tiny, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    proc = run_cli("bench", str(tiny), "--output", str(blocker / "x.json"))
    assert proc.returncode == 2 and "Benchmark" not in proc.stdout


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_a_named_dimension_shared_by_inputs_is_given_once(tmp_path):
    from toolkit.testing import tiny_onnx_two_inputs

    model = tiny_onnx_two_inputs(tmp_path / "two.onnx")
    proc, results = bench_json(str(model), "--shape", "a=2x7", "--runs", "3")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["inputs"] == {"a": [2, 7], "b": [2, 7]}
    proc = run_cli("bench", str(model), "--shape", "a=2x7", "--shape", "b=2x8")
    assert proc.returncode == 2 and "dimension 'L' is 7 in 'a' but 8 in 'b'" in proc.stderr
    proc = run_cli("bench", str(model), "--shape", "a=3x7", "--batch", "2")
    assert proc.returncode == 2 and "give the batch two sizes" in proc.stderr


@pytest.mark.parametrize("fixture,precision", [("tiny_fp32.tflite", "fp32"), ("tiny_int8.tflite", "int8")])
def test_a_tflite_file_without_a_manifest_gets_its_precision_from_its_tensors(fixture, precision, tmp_path):
    from toolkit.api import model_format
    from toolkit.testing import tiny_tflite_model

    path = tiny_tflite_model(tmp_path, fixture)
    assert model_format("tflite").describe(path)["precision"] == precision
    proc, results = bench_json(str(path), "--runs", "3")
    assert proc.returncode == 0 and results[0]["precision"] == precision


# ---------------------------------------------------------------------------------------------- robustness
@pytest.mark.slow
def test_ctrl_c_stops_at_once_reports_what_finished_and_exits_130(tiny):
    import signal
    import subprocess
    import time

    from conftest import TOOLKIT

    proc = subprocess.Popen([TOOLKIT, "bench", str(tiny), str(tiny), "--runs", "10000000", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # the first pair is timing its ten million runs
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the benchmark child should be running"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)  # the ten million runs alone would take many minutes
    assert proc.returncode == 130 and "Interrupted." in err and "Stopped after 0 of 2 pairs" in err
    assert json.loads(out)["results"] == []
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a child outlived the CLI"


def test_a_pipe_named_like_a_model_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    proc = run_cli("bench", str(fifo), timeout=30)
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_an_unreadable_manifest_is_a_note_and_the_model_still_runs(tiny):
    manifest_path(tiny).write_text("[]")
    proc, results = bench_json(str(tiny), "--runs", "3")
    assert proc.returncode == 0, proc.stderr
    assert "ignoring tiny.onnx.manifest.json: it is unreadable" in results[0]["notes"][0]


@pytest.mark.slow
def test_concurrent_quantizations_into_one_output_leave_a_manifest_that_matches_the_file(tiny_with_manifest):
    import subprocess

    from conftest import TOOLKIT

    out = tiny_with_manifest.with_name("shared.onnx")
    procs = [subprocess.Popen([TOOLKIT, "quantize", str(tiny_with_manifest), "--scheme", "fake8", "-o", f"note={i}",
                               "--output", str(out), "--format", "json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **CONTRACT}) for i in range(4)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["sha256"] == sha256_file(out)
    assert not [p for p in out.parent.iterdir() if ".partial" in p.name or p.name.endswith(".tmp")]
