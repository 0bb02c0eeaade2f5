"""Artifacts and manifests: format sniffing, atomic writes, and a manifest that round-trips."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from toolkit import atomic
from toolkit.artifact import Artifact, Manifest, manifest_path, sha256_file
from toolkit.formats import detect as sniff_format
from toolkit.errors import ModelFileError
from toolkit.specs import Quantization, TensorSpec


def test_manifest_round_trips_through_json(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    spec = TensorSpec("x", (None, 28, 28, 1), "int8", Quantization((0.0039,), (-128,)))
    manifest = Manifest(file=model.name, format="tflite", precision="int8", sha256=sha256_file(model),
                        inputs=[spec], outputs=[TensorSpec("y", (None, 10), "int8", Quantization((0.1,), (3,)))],
                        model="cnn", source={"file": "cnn.keras", "sha256": "ab" * 32}, producer={"plugin": "keras"},
                        versions={"tensorflow-cpu": "2.21.0"}, quantization={"scheme": "int8"}, seed=7,
                        metrics={"parity": {"passed": True}})
    Artifact(model, manifest).write_manifest()
    assert manifest_path(model).name == "m.tflite.manifest.json"
    again = Artifact.open(model)
    assert again.manifest == manifest
    assert again.manifest.inputs[0].quantization.zero_point == (-128,)
    assert again.verify_checksum()
    model.write_bytes(model.read_bytes() + b"x")
    assert not Artifact.open(model).verify_checksum()


def test_manifests_of_different_formats_do_not_collide(artifacts):
    names = {manifest_path(p).name for p in artifacts.values()}
    assert len(names) == len(artifacts)


def test_sniff_recognises_real_files_by_their_bytes(artifacts, tmp_path):
    assert sniff_format(artifacts["tflite"]) == "tflite"
    assert sniff_format(artifacts["onnx"]) == "onnx"
    assert sniff_format(artifacts["keras"]) == "keras"
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(artifacts["tflite"].read_bytes())
    assert sniff_format(renamed) == "tflite"


@pytest.mark.parametrize("name,content,message", [
    ("missing.tflite", None, "does not exist"),
    ("empty.onnx", b"", "is empty"),
    ("junk.tflite", b"this is not a model at all", "not a valid tflite file"),
    ("junk.onnx", b"<html>404 not found</html>", "not a valid onnx file"),
    ("notes.txt", b"hello world, not a model", "not a recognised model file"),
])
def test_sniff_rejects_bad_files_with_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError) as err:
        sniff_format(path)
    assert message in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_a_stale_manifest_of_another_format_is_ignored_with_a_note(artifacts, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(artifacts["onnx"].read_bytes())
    manifest_path(model).write_text(manifest_path(artifacts["tflite"]).read_text())
    opened = Artifact.open(model)
    assert opened.manifest is None
    assert opened.notes == ["ignoring m.onnx.manifest.json: it describes a tflite file, and this one is onnx; "
                            "delete it or make the artifact again"]


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "results.json"
    atomic.write_json(target, {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    with pytest.raises(TypeError):
        atomic.write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [0, 1, 2]}  # the old file survives a failed write
    assert os.listdir(target.parent) == ["results.json"]


def test_a_manifest_of_another_version_of_the_file_is_ignored_with_a_note(artifacts, tmp_path):
    # cnn_int8.tflite copied over cnn.tflite, whose fp32 manifest stays: the manifest no longer describes it.
    model = tmp_path / "cnn.tflite"
    model.write_bytes(artifacts["tflite_int8"].read_bytes())
    manifest_path(model).write_text(manifest_path(artifacts["tflite"]).read_text())
    artifact = Artifact.open(model)
    assert artifact.manifest is None and artifact.precision == "unknown"
    assert "sha256 differs" in artifact.notes[0]


def test_atomic_writes_are_readable_like_any_file(tmp_path):
    target = atomic.write_bytes(tmp_path / "model.tflite", b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
