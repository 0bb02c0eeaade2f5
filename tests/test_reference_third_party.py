"""Real third-party architectures on the reference backend: the ONNX model zoo's networks that ship inside the
onnx package (onnx/backend/test/data/light: AlexNet, Inception v1 and v2, ResNet-50, SqueezeNet, ShuffleNet,
DenseNet-121, as Caffe2 and PyTorch exported them, old opsets and all). Their "light" files build every weight
with ConstantOfShape (all equal); the test gives each a random one instead, so that a wrong kernel shows, and
holds the reference backend to ONNX Runtime within 1e-5 relative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.artifact import Artifact
from toolkit.interfaces import BackendOptions
from toolkit_reference.backend import ReferenceBackend

# What each brings: LRN and Dropout (AlexNet), asymmetric average pooling and Concat (Inception), Sum and batch
# normalisation (ResNet), opset-9 Softmax over a 4-D tensor and Dropout's mask (SqueezeNet), channel shuffles
# (ShuffleNet), dense Concat blocks (DenseNet).
MODELS = ["light_bvlc_alexnet", "light_inception_v1", "light_inception_v2", "light_resnet50", "light_squeezenet",
          "light_shufflenet", "light_densenet121"]


def _zoo() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def randomized(source: Path, output: Path) -> tuple[Path, str]:
    """`source` with each ConstantOfShape weight replaced by a random initializer (He-scaled for matrices and
    kernels, near 1 for vectors such as batch-norm scales), and the name of its image input."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    model = onnx.load(str(source))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in constants:
            shape = [int(d) for d in constants[node.input[0]]]
            if len(shape) == 1:
                weight = 1 + 0.1 * rng.standard_normal(shape)
            else:
                weight = rng.standard_normal(shape) * np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))
            graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, str(output))
    image = next(i.name for i in graph.input if i.name not in {t.name for t in graph.initializer})
    return output, image


@pytest.mark.slow  # a few hundred million multiply-adds per model, in numpy
@pytest.mark.parametrize("name", MODELS)
def test_a_model_zoo_network_runs_on_the_reference_backend_as_on_onnx_runtime(name, tmp_path):
    import onnxruntime as ort

    path, image = randomized(_zoo() / f"{name}.onnx", tmp_path / f"{name}.onnx")
    session = ReferenceBackend().load(Artifact.open(path), BackendOptions())
    (spec,) = [s for s in session.input_specs if s.name == image]
    x = np.random.default_rng(1).random([d or 1 for d in spec.shape], dtype=np.float32)
    ours = session.run({image: x})
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = dict(zip([o.name for o in runtime.get_outputs()], runtime.run(None, {image: x})))
    for out, want in theirs.items():
        got = ours[out]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
