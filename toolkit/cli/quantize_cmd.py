"""`toolkit quantize`: int8 quantization calibrated on a real dataset, then checked against the source."""

from __future__ import annotations

from pathlib import Path

import click

from .options import format_option


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--scheme", type=click.Choice(["int8"]), default="int8", show_default=True,
              help="Quantization scheme.")
@click.option("--calibration", "calibration", required=True, metavar="DATASET",
              help="Dataset whose training split calibrates the quantizer, e.g. fashion-mnist.")
@click.option("--samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Calibration samples.")
@click.option("--to", "target", metavar="FORMAT",
              help="Output format, when installed quantizers offer several for MODEL's format.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which calibration samples are drawn.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file (default: MODEL_int8 beside MODEL).")
@format_option
def quantize(model, scheme, calibration, samples, target, seed, output, fmt) -> None:
    """Quantize MODEL: .keras -> full-int8 .tflite; .onnx -> static QDQ .onnx (uint8 activations, int8
    per-channel weights). The result must agree with MODEL on real held-out data, or it fails (exit 1).

    \b
    Examples:
      toolkit quantize out/cnn.keras --scheme int8 --calibration fashion-mnist
      toolkit quantize out/cnn.onnx --calibration fashion-mnist --output out/cnn_int8.onnx
    """
    from .. import operations
    from .convert_cmd import report_artifact

    artifact = operations.quantize(model, scheme, calibration, output, samples=samples, seed=seed, to=target)
    report_artifact(artifact, fmt)
