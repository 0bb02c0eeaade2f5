"""`toolkit convert`: one format to another in a child process, checked against the source, then published."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (OutputFile, echo_json, format_option, keep_failed_option, memory_limit_option, note,
                      parity_option, plugin_command, plugin_option, traceback_option)


@plugin_command("convert", kinds=("converters",))
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "target", required=True, metavar="FORMAT",
              help="Target format: tflite or onnx (or one an installed plugin adds).")
@click.option("--converter", metavar="NAME", help="Which converter, when several can do it (default: highest priority).")
@click.option("--output", type=OutputFile(),
              help="Output file (default: beside MODEL with the new extension).")
@click.option("--dataset", metavar="NAME",
              help="Real data for the parity check (default: the dataset in MODEL's manifest).")
@plugin_option
@keep_failed_option
@parity_option
@memory_limit_option
@format_option
@traceback_option
def convert(model, target, converter, output, dataset, plugin_options, keep_failed, parity, fmt) -> None:
    """Convert MODEL to another format and check the result against MODEL on real data.

    The result is written under its final name only after every output matches the source's (within float
    rounding for fp32); otherwise the command fails with exit code 1 and nothing is written (with --keep-failed
    the rejected file is kept as NAME.failed.EXT). Interrupted or killed, it leaves no file behind.

    \b
    Example:
      toolkit convert out/cnn.keras --to onnx
      toolkit convert out/cnn.keras --to onnx -o opset=13
    """
    from .. import operations
    from ..metrics import parse_thresholds
    from ..options import parse_pairs

    artifact = operations.convert(model, target, output, dataset=dataset, converter=converter,
                                  options=parse_pairs(plugin_options), on_note=note, keep_failed=keep_failed,
                                  thresholds=parse_thresholds(parse_pairs(parity, "--parity", "top1=0.95")))
    report_artifact(artifact, fmt)


def report_artifact(artifact, fmt: str) -> None:
    from ..units import human_size

    m = artifact.manifest
    if fmt == "json":
        echo_json({"artifact": str(artifact.path), "manifest": m.to_dict()})
        return
    parity = m.metrics.get("parity", {})
    click.echo(f"Wrote {artifact.path} ({m.format}, {m.precision}, {human_size(artifact.size_bytes)}) "
               f"and {artifact.path.name}.manifest.json")
    if parity:
        parts = []
        if parity.get("top1_agreement") is not None:
            parts.append(f"top-1 agreement {parity['top1_agreement'] * 100:.2f}%")
        if parity.get("max_abs_diff") is not None:
            parts.append(f"max |diff| {parity['max_abs_diff']:.3g}")
        click.echo(f"Checked against {parity['against']} on {parity['data']}, {len(parity.get('outputs', {}))} "
                   f"output(s): {', '.join(parts)} ({'passed' if parity['passed'] else 'FAILED'}: {parity['rule']})")
    ev = m.metrics.get("evaluation")
    if ev:
        key = "top1" if ev["source"].get("top1") is not None else "mae"
        show = (lambda v: f"{v * 100:.2f}%") if key == "top1" else (lambda v: f"{v:.4g}")
        click.echo(f"Held-out {'accuracy' if key == 'top1' else 'MAE'} on those samples: {show(ev['artifact'][key])} "
                   f"(the source: {show(ev['source'][key])})")
