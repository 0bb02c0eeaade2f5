"""`toolkit inspect`: inputs and outputs, operators, weights, multiply-accumulates, precision, what each runtime
does with the model (which operators a delegate takes), and the manifest."""

from __future__ import annotations

from pathlib import Path

import click

from .options import echo_json, format_option, memory_limit_option, note, stdout_console, traceback_option


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@format_option
@memory_limit_option
@traceback_option
def inspect(model, fmt) -> None:
    """Show what MODEL is: its inputs and outputs (with quantization parameters), operator counts, weights,
    multiply-accumulates per sample, precision and size, which operators each runtime's delegate takes (XNNPACK
    for LiteRT), Flex ops, and its manifest. Any registered format; the file is read in a child process.

    \b
    Examples:
      toolkit inspect out/cnn_int8.tflite
      toolkit inspect out/cnn.onnx --format json
    """
    from ..inspection import inspect_model

    report = inspect_model(model)
    if fmt == "json":
        echo_json(report)
        return
    for text in report["notes"]:
        note(text)
    show(report)


def show(report: dict) -> None:
    from rich.table import Table

    from ..benchmark.protocol import fmt_shape
    from ..units import human_size

    console = stdout_console()
    macs = report.get("macs")
    facts = [f"{Path(report['file']).name}: {report['format']}, {report['precision']}, "
             f"{human_size(report['size_bytes'])}",
             f"{report['parameters']:,} weights" if report.get("parameters") is not None else None,
             f"{macs / 1e6:,.2f} M multiply-accumulates per sample" if macs else None]
    console.print(", ".join(f for f in facts if f), markup=False, highlight=False)
    tensors = Table(title="Inputs and outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "quantization"):
        tensors.add_column(col)
    for role, key in (("in", "inputs"), ("out", "outputs")):
        for s in report[key]:
            q = s.get("quantization")
            qtext = (f"scale {q['scale'][0]:.4g}, zero point {q['zero_point'][0]}" if q and len(q["scale"]) == 1
                     else f"per-channel ({len(q['scale'])} scales)" if q else "")
            tensors.add_row(role, s["name"], fmt_shape(s["shape"]), s["dtype"], qtext)
    console.print(tensors)
    ops = report.get("ops") or {}
    if ops:
        table = Table(title="Operators", title_justify="left")
        table.add_column("operator")
        table.add_column("count", justify="right")
        runtimes = {name: seen for name, seen in report["runtimes"].items() if "delegated" in seen}
        for name in runtimes:
            table.add_column(f"{name}: delegated", justify="right")
        for op, count in ops.items():
            cells = [str(runtimes[r]["delegated"].get(op, 0)) for r in runtimes]
            table.add_row(op, str(count), *cells)
        console.print(table)
    flex = report.get("flex_ops") or [op for op in ops if op.startswith("Flex")]
    if flex:
        note(f"Flex ops {', '.join(flex)}: only a TFLite runtime built with TensorFlow's kernels can run them")
    manifest = report.get("manifest")
    if manifest:
        parity = manifest.get("metrics", {}).get("parity")
        source = manifest.get("source") or {}
        made = f"made from {source['file']}" if source.get("file") else "trained"
        checked = (f"; check against {parity['against']}: {'passed' if parity['passed'] else 'FAILED'} "
                   f"({parity['rule']})" if parity else "")
        console.print(f"Manifest: {manifest['model']} ({manifest.get('task') or 'task unknown'}), {made} by "
                      f"{manifest.get('producer', {}).get('plugin', '?')}{checked}", markup=False, highlight=False)
    else:
        console.print("No manifest: nothing says where this file came from or whether it was checked.",
                      markup=False, highlight=False)
