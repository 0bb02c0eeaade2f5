"""Damaged model files, as a bad download or a buggy exporter leaves them."""

from __future__ import annotations

from pathlib import Path


def tflite_with_invalid_operator_input(source: str, target: str) -> str:
    """Copy a .tflite with its first operator's first input index set to -1 (needs TensorFlow: run in a child).

    Older LiteRT builds segfaulted on this with XNNPACK on; the toolkit must survive either way."""
    import flatbuffers
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema

    data = Path(source).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    op = model.subgraphs[0].operators[0]
    op.inputs = np.array(op.inputs).copy()
    op.inputs[0] = -1
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(target).write_bytes(bytes(builder.Output()))
    return target
