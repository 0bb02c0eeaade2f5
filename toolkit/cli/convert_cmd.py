"""`toolkit convert`: one format to another in a child process, then checked against the source."""

from __future__ import annotations

from pathlib import Path

import click

from .options import echo_json, format_option


@click.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "target", required=True, metavar="FORMAT",
              help="Target format: tflite or onnx (or what an installed converter plugin adds).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file (default: beside MODEL with the new extension).")
@click.option("--dataset", metavar="NAME",
              help="Real data for the parity check (default: the dataset in MODEL's manifest).")
@format_option
def convert(model, target, output, dataset, fmt) -> None:
    """Convert MODEL (.keras) to TFLite or ONNX in fp32 and check the result against MODEL on real data.

    A result whose outputs differ from the source's beyond float rounding fails with exit code 1; the file
    and its manifest (parity.passed = false) are kept for inspection.

    \b
    Example:
      toolkit convert out/cnn.keras --to onnx
    """
    from .. import operations

    artifact = operations.convert(model, target, output, dataset=dataset)
    report_artifact(artifact, fmt)


def report_artifact(artifact, fmt: str) -> None:
    m = artifact.manifest
    if fmt == "json":
        echo_json({"artifact": str(artifact.path), "manifest": m.to_dict()})
        return
    parity = m.metrics.get("parity", {})
    click.echo(f"Wrote {artifact.path} ({m.format}, {m.precision}, {artifact.size_bytes / 1024:.1f} KB) "
               f"and {artifact.path.name}.manifest.json")
    if parity:
        click.echo(f"Checked against {parity['against']} on {parity['data']}: top-1 agreement "
                   f"{parity['top1_agreement'] * 100:.2f}%, max |diff| {parity['max_abs_diff']:.3g} "
                   f"({'passed' if parity['passed'] else 'FAILED'}: {parity['rule']})")
