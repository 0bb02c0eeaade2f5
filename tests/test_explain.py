"""`toolkit explain`: saliency maps of image classifiers on real samples, as PNGs and one HTML page.

The maths is checked where the answer is known: a model whose class-0 logit is the sum of the image's top-left
quadrant must have a map that lights that quadrant and nothing else, through ONNX Runtime, the reference backend
and (slow) Keras gradients. The trained digits CNN is explained end to end against its int8 file, and the page
opens in headless Chromium.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from browser import needs_chromium, open_in_chromium  # tests/support
from conftest import TOOLKIT, digits_test
from toolkit import explain, explain_page, saliency
from toolkit.cli import cli

SIDE = 8  # the quadrant model's images: 8x8x1, its quadrant the top-left 4x4


def run_cli(*args: str) -> SimpleNamespace:
    """The CLI in this process (its models still run in child processes)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def error_line(proc: SimpleNamespace) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def quadrant_model(path: Path, layout: str = "NHWC", batch: int | str = "N") -> Path:
    """An ONNX model with logits [0.1 x the sum of the top-left quadrant, 0]: class 0 rests on that quadrant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    mask = np.zeros((SIDE, SIDE), np.float32)
    mask[:SIDE // 2, :SIDE // 2] = 1.0
    weights = np.stack([mask.ravel() * 0.1, np.zeros(SIDE * SIDE, np.float32)], axis=1)  # p0 about 0.77
    shape = [batch, SIDE, SIDE, 1] if layout == "NHWC" else [batch, 1, SIDE, SIDE]
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])], "quadrant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def image_data(path: Path, shape: tuple[int, ...], classes: int = 2, n: int = 12) -> Path:
    """An .npz dataset (x_train, y_train, x_test, y_test) of positive random images: a dataset by its path."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.0, (n, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    np.savez(path, x_train=x[: n // 2], y_train=y[: n // 2], x_test=x[n // 2:], y_test=y[n // 2:])
    return path


@pytest.fixture(scope="module")
def quadrant(tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("quadrant")
    return SimpleNamespace(model=quadrant_model(folder / "quadrant.onnx"),
                           data=image_data(folder / "images.npz", (SIDE, SIDE, 1)), folder=folder)


class Page(HTMLParser):
    """The explain page's map images (by sample) and table cells, and every script or external reference."""

    def __init__(self, text: str):
        super().__init__()
        self.images: dict[str, str] = {}
        self.cells: list[str] = []
        self.scripts, self.external, self._td = 0, [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.scripts += tag == "script"
        self.external += [a[k] for k in ("src", "href") if a.get(k) and not a[k].startswith("data:")]
        if tag == "img" and a.get("class") == "map":
            self.images[a["data-sample"]] = a["src"]
        if tag == "td":
            self._td = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._td is not None:
            self.cells.append(self._td)
            self._td = None

    def handle_data(self, data):
        if self._td is not None:
            self._td += data


def outside(heat: np.ndarray) -> float:
    """The largest value of a map outside the top-left quadrant."""
    return float(max(np.abs(heat[SIDE // 2:, :]).max(), np.abs(heat[:, SIDE // 2:]).max()))


def is_png(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"


# ---------------------------------------------------------------------------------------------- the maths
def test_patches_cover_the_whole_image_and_scale_with_it():
    assert saliency.default_patch(8, 8) == (2, 1) and saliency.default_patch(28, 28) == (4, 2)
    assert saliency.default_patch(224, 224) == (32, 16)
    assert saliency.positions(28, 4, 2) == list(range(0, 25, 2))
    assert saliency.positions(10, 4, 4) == [0, 4, 6]  # the last patch reaches the far edge


def test_the_occlusion_map_of_a_quadrant_score_lights_that_quadrant_only():
    image = np.random.default_rng(1).uniform(0.5, 1.0, (SIDE, SIDE, 1)).astype(np.float32)
    score = lambda batch: batch[:, :4, :4, 0].sum(axis=(1, 2))  # noqa: E731
    heat = saliency.occlusion_map(image, score, patch=2, stride=2, fill=np.zeros(1, np.float32))
    assert heat.shape == (SIDE, SIDE)
    # Patches that do not overlap: each pixel gets the drop of the one patch that hides it, its pixels' sum.
    expected = image[:4, :4, 0].reshape(2, 2, 2, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(heat[:4, :4], np.kron(expected, np.ones((2, 2))), rtol=1e-6)
    assert np.all(heat[4:, :] == 0) and np.all(heat[:, 4:] == 0)


def test_logits_are_told_from_probabilities_and_maps_compared_by_pearson():
    assert saliency.is_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    assert not saliency.is_probabilities(np.array([[2.0, -1.0]]))
    np.testing.assert_allclose(saliency.probabilities(np.array([[0.0, np.log(3.0)]]), logits=True), [[0.25, 0.75]])
    a = np.arange(16.0).reshape(4, 4)
    assert saliency.pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert saliency.pearson(a, -a) == pytest.approx(-1.0)
    assert saliency.pearson(a, np.zeros_like(a)) is None  # a flat map correlates with nothing


def test_image_layouts_are_read_from_the_sample_shape_and_fills_are_per_channel():
    assert saliency.image_layout((28, 28, 1)) == "NHWC" and saliency.image_layout((3, 32, 32)) == "NCHW"
    assert saliency.image_layout((12, 1)) is None and saliency.image_layout((64, 64, 64)) is None
    rgb = np.stack([np.full((2, 6, 6), v, np.float32) for v in (0.1, 0.5, 0.9)], axis=1)  # (N, C, H, W)
    np.testing.assert_allclose(saliency.fill_values(rgb, "NCHW", "mean"), [0.1, 0.5, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(saliency.fill_values(rgb, "NCHW", "zero"), [0, 0, 0])


def test_colour_images_are_drawn_with_both_maps_and_a_flat_map_has_no_correlation():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (1, 6, 6, 3)).astype(np.float32)
    heat = rng.standard_normal((1, 6, 6)).astype(np.float32)
    main = explain.Side("a.onnx", "onnxruntime", np.array([[2.0, 0.0]]), True, [0], heat)
    other = explain.Side("a_int8.tflite", "tflite", np.array([[0.3, 0.7]]), False, [0], np.zeros_like(heat))
    ex = explain.Explanation("rgb", [0], images, [1], ["cat", "dog"], "occlusion", {"pick": "first"}, main, other)
    ex.correlations = explain.correlate(main, other)
    assert ex.correlations == [None]
    assert is_png(explain_page.sample_png(ex, 0))
    row = ex.to_dict()["samples"][0]
    assert (row["model"]["predicted_name"], row["compare"]["predicted_name"]) == ("cat", "dog")
    assert row["compare"]["probability"] == 0.7  # already probabilities: taken as they are


# ---------------------------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def quadrant_run(quadrant) -> SimpleNamespace:
    """The quadrant model on ONNX Runtime beside the same file on the reference backend, patches that do not
    overlap, filled with zero."""
    out = quadrant.folder / "maps"
    proc = run_cli("explain", quadrant.model, "--dataset", quadrant.data, "--compare", quadrant.model,
                   "--compare-backend", "reference", "--samples", 3, "--patch", 2, "--stride", 2, "--fill", "zero",
                   "--output", out, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(out=out, result=json.loads(proc.stdout))


@pytest.mark.slow  # explain's child processes: out of the fast tier
def test_the_quadrant_model_through_onnx_runtime_and_the_reference_backend(quadrant, quadrant_run):
    result, out = quadrant_run.result, quadrant_run.out
    assert result["model"] == {"file": str(quadrant.model), "backend": "onnxruntime",
                               "scores": "logits (softmax applied)"}
    assert result["compare"]["backend"] == "reference"
    assert (result["patch"], result["stride"], result["fill"], result["positions"]) == (2, 2, "zero", 16)
    maps = np.load(out / "maps.npz")
    assert maps["maps"].shape == (3, SIDE, SIDE)
    for heat in (*maps["maps"], *maps["compare_maps"]):
        assert heat[:4, :4].min() > 0.01  # hiding the quadrant lowers class 0's probability...
        assert outside(heat) < 1e-6  # ...and nothing else changes it (but for the rounding of sums)
    # The same file on two backends: the same maps, the same class explained.
    assert [row["correlation"] for row in result["samples"]] == [pytest.approx(1.0, abs=1e-4)] * 3
    assert result["agreement"] == 1.0 and all(row["model"]["predicted"] == 0 for row in result["samples"])
    assert [row["png"] for row in result["samples"]] == ["sample-00000.png", "sample-00001.png", "sample-00002.png"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "maps.npz", "sample-00000.png",
                                                     "sample-00001.png", "sample-00002.png"]  # no temporary file


@pytest.mark.slow  # explain's child processes: out of the fast tier
def test_the_page_embeds_every_sample_and_needs_nothing_else(quadrant, quadrant_run):
    out = quadrant_run.out
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    assert page.scripts == 0 and page.external == []
    assert sorted(page.images) == ["0", "1", "2"]
    for index, uri in page.images.items():
        png = base64.b64decode(uri.removeprefix("data:image/png;base64,"), validate=True)
        assert is_png(png) and png == (out / f"sample-{int(index):05d}.png").read_bytes()
    # Per sample: where it comes from, its label, both predictions with their probability, the correlation.
    p0 = 1 / (1 + np.exp(-0.1 * np.load(quadrant.data)["x_test"][0, :4, :4].sum()))  # softmax([s, 0])[0]
    first = page.cells.index("test[0]")
    assert page.cells[first:first + 5] == ["test[0]", "0", f"0 ({p0:.0%})", f"0 ({p0:.0%})", "1.000"]


@pytest.mark.slow  # explain's child processes: out of the fast tier
def test_a_channels_first_model_with_a_fixed_batch_is_explained_in_its_own_layout(tmp_path):
    # A batch of 3 fixed in the file: 2 samples and 49 occluded images are fed 3 at a time, the last batch padded.
    model = quadrant_model(tmp_path / "nchw.onnx", layout="NCHW", batch=3)
    data = image_data(tmp_path / "nchw.npz", (1, SIDE, SIDE))
    proc = run_cli("explain", model, "--dataset", data, "--samples", 2, "--output", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "nchw.onnx on onnxruntime (logits (softmax applied)), nchw.npz test split, the first ones\n" in proc.stdout
    assert ("occlusion: patch 2, stride 1, 49 positions per sample; fill: the training images' mean, 0.7"
            in proc.stdout)
    assert f"Wrote {tmp_path / 'out' / 'index.html'} and 2 PNG(s)" in proc.stderr
    heat = np.load(tmp_path / "out" / "maps.npz")["maps"][0]
    assert heat.shape == (SIDE, SIDE)
    # Overlapping patches of the mean (which raises the score where a pixel is darker than it): the quadrant lights
    # up, the pixels beside it get a share of the patches that straddle its edge, nothing farther away does.
    assert np.abs(heat[:4, :4]).max() > 0.01 and np.abs(heat[5:, :]).max() < 1e-6 and np.abs(heat[:, 5:]).max() < 1e-6


def test_samples_are_the_first_ones_or_those_the_models_get_wrong_or_disagree_on():
    labels, mine, theirs = [0, 1, 2, 3, 4], [0, 9, 2, 9, 4], [0, 1, 2, 9, 9]
    assert explain.pick_indices("first", 3, labels, mine) == [0, 1, 2]
    assert explain.pick_indices("wrong", 3, labels, mine) == [1, 3]
    assert explain.pick_indices("disagree", 1, labels, mine, theirs) == [1]


@pytest.mark.slow  # explain's child processes: out of the fast tier
def test_pick_wrong_explains_the_samples_the_model_gets_wrong(quadrant, tmp_path):
    # The quadrant model always answers 0; the test split's labels alternate 0, 1, 0, 1...
    proc = run_cli("explain", quadrant.model, "--dataset", quadrant.data, "--pick", "wrong", "--samples", 2,
                   "--output", tmp_path / "out", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["pick"] == "wrong"
    assert [(row["index"], row["label"], row["model"]["predicted"]) for row in result["samples"]] == [(1, 1, 0),
                                                                                                    (3, 1, 0)]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["sample-00001.png", "sample-00003.png"]


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def tabular_model(tmp_path_factory) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(np.ones((4, 2), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("tabular") / "mlp.onnx"
    onnx.save(model, path)
    return path


def test_a_model_that_takes_no_images_is_refused(tabular_model, tmp_path):
    line = error_line(run_cli("explain", tabular_model, "--dataset", "breast-cancer", "--output", tmp_path / "o"))
    assert line == ("Error: 'mlp.onnx' takes float32 [N, 4], not images; explain draws saliency maps of image "
                    "classifiers. Explain a CNN (input [N, H, W, C] or [N, C, H, W])")
    assert not (tmp_path / "o").exists()


def test_a_dataset_whose_images_do_not_fit_is_refused(tmp_path):
    small = quadrant_model(tmp_path / "nchw.onnx", layout="NCHW")
    line = error_line(run_cli("explain", small, "--dataset", "digits", "--output", tmp_path / "o"))
    assert line == ("Error: dataset 'digits' gives samples of shape [8, 8, 1], 'nchw.onnx' wants [1, 8, 8]. "
                    "Pick the dataset the model was trained on")


def test_a_model_that_scores_other_classes_than_the_dataset_is_refused(quadrant, tmp_path):
    # 8x8x1 images fit, but digits has 10 classes and the quadrant model scores 2: found on the first run, before
    # any map is made.
    line = error_line(run_cli("explain", quadrant.model, "--dataset", "digits", "--output", tmp_path / "o"))
    assert line == ("Error: 'quadrant.onnx' scores 2 classes and the dataset has 10. Pick the dataset the model was "
                    "trained on")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, expected", [
    (["--dataset", "digts"], "Error: unknown dataset 'digts'. Did you mean 'digits'?"),
    (["--backend", "onnxrutnime"], "Error: unknown backend 'onnxrutnime'. Did you mean 'onnxruntime'?"),
    (["--backend", "tflite"], "Error: tflite runs tflite files, not onnx. Backends that can: onnx"),
    (["--method", "gradient"], "Error: --method gradient needs a Keras model, and MODEL 'quadrant.onnx' is a .onnx "
                               "file. Use --method occlusion, which runs through any backend (int8 files too)"),
    (["--compare-backend", "reference"], "Error: --compare-backend is for the model of --compare. Add --compare "
                                         "OTHER, or drop it"),
    (["--patch", "9"], "Error: --patch 9 is larger than the 8x8 images. Give at most 8"),
    (["--pick", "disagree"], "Error: --pick disagree needs two models. Add --compare OTHER"),
])
def test_bad_names_and_options_are_one_line_with_the_fix(quadrant, tmp_path, args, expected):
    data = [] if "--dataset" in args else ["--dataset", quadrant.data]
    line = error_line(run_cli("explain", quadrant.model, *data, *args, "--output", tmp_path / "o"))
    assert line.startswith(expected), line
    assert not (tmp_path / "o").exists()


def test_a_missing_model_or_comparison_file_is_one_line(quadrant, tmp_path):
    missing = tmp_path / "nope.onnx"
    line = error_line(run_cli("explain", missing, "--dataset", quadrant.data))
    assert line == f"Error: model file '{missing}' does not exist. Check the path"
    line = error_line(run_cli("explain", quadrant.model, "--dataset", quadrant.data, "--compare", missing))
    assert line == f"Error: model file '{missing}' does not exist. Check the path"


def test_a_model_without_a_manifest_needs_a_dataset(quadrant, tmp_path):
    line = error_line(run_cli("explain", quadrant.model, "--output", tmp_path / "o"))
    assert line == "Error: 'quadrant.onnx' has no manifest naming its dataset. Pass --dataset NAME"


# ---------------------------------------------------------------------------------------------- the real CNN
@pytest.fixture(scope="module")
def cnn_maps(artifacts, tmp_path_factory) -> SimpleNamespace:
    """The trained digits CNN's fp32 ONNX file explained beside its int8 TFLite file, by the console script."""
    out = tmp_path_factory.mktemp("cnn") / "maps"
    proc = subprocess.run([TOOLKIT, "explain", str(artifacts["onnx"]), "--compare", str(artifacts["tflite_int8"]),
                           "--samples", "4", "--output", str(out), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(out=out, result=json.loads(proc.stdout))


def test_the_cnn_and_its_int8_file_look_at_the_same_pixels(cnn_maps):
    result = cnn_maps.result
    assert result["dataset"] == "digits"  # from the manifest
    assert result["model"]["backend"] == "onnxruntime" and result["compare"]["backend"] == "tflite"
    assert (result["patch"], result["stride"], result["positions"]) == (2, 1, 49)
    labels = [row["label"] for row in result["samples"]]
    assert labels == digits_test()[1][:4].tolist()  # the first four samples of the test split, in order
    assert sum(row["model"]["predicted"] == row["label"] for row in result["samples"]) >= 3
    # int8 keeps what the float model looks at: strongly correlated maps, and the same answers.
    assert all(row["correlation"] > 0.8 for row in result["samples"]), result["samples"]
    assert result["agreement"] >= 0.75
    maps = np.load(cnn_maps.out / "maps.npz")
    assert maps["maps"].shape == maps["compare_maps"].shape == (4, 8, 8)
    np.testing.assert_array_equal(maps["classes"], maps["compare_classes"])  # both explain the fp32 answer


@needs_chromium
def test_the_page_opens_in_chromium_with_every_map(cnn_maps, tmp_path):
    verdict, console = open_in_chromium(cnn_maps.out / "index.html", tmp_path, "img.map", "data-sample")
    assert verdict.startswith("plots-ok 4/4 0="), verdict
    assert console == []


# ---------------------------------------------------------------------------------------------- gradients
KERAS_QUADRANT = """
import sys, numpy as np, keras
mask = np.zeros((8, 8), np.float32); mask[:4, :4] = 1
w = np.stack([mask.ravel() * 0.1, np.zeros(64, np.float32)], axis=1)
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, use_bias=False)])
model.layers[-1].set_weights([w])
model.save(sys.argv[1])
"""


@pytest.mark.slow
def test_gradients_of_a_keras_model_light_the_quadrant_it_reads(quadrant, tmp_path):
    model = tmp_path / "quadrant.keras"
    subprocess.run([sys.executable, "-c", KERAS_QUADRANT, str(model)], check=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    proc = run_cli("explain", model, "--dataset", quadrant.data, "--method", "gradient", "--samples", 2,
                   "--output", tmp_path / "out", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["method"] == "gradient" and result["model"]["backend"] == "keras"
    for heat in np.load(tmp_path / "out" / "maps.npz")["maps"]:
        assert heat[:4, :4].min() > 0.005 and outside(heat) == 0  # 0 x the gradient of p0: exactly zero
        np.testing.assert_allclose(heat[:4, :4], heat[0, 0])  # d p0 / d x is the same for every quadrant pixel


# ---------------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.slow
def test_ctrl_c_stops_with_130_and_writes_nothing(tmp_path):
    from third_party_models import make_small_cnn

    model = make_small_cnn(tmp_path / "small.onnx")
    data = image_data(tmp_path / "big.npz", (1, 28, 28), classes=10, n=2000)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([TOOLKIT, "explain", str(model), "--dataset", str(data), "--backend", "reference",
                             "--samples", "1000", "--output", str(tmp_path / "out")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 60
    while not any(scratch.glob("toolkit-child-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the child is loading or running the model
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().endswith("Interrupted.")
    assert not (tmp_path / "out").exists()
    assert not any(scratch.iterdir())  # the child's folder went with it
