"""`toolkit quantize`: a scheme any registered quantizer offers, calibrated on real data, checked, published."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (OutputFile, echo_json, format_option, keep_failed_option, memory_limit_option, note,
                      parity_option, plugin_command, plugin_option, traceback_option)


def list_schemes(fmt: str) -> None:
    from .. import plugins

    rows = []
    for q in plugins.registries().quantizers:
        for scheme in q.schemes:
            rows.append({"scheme": scheme, "quantizer": q.name, "from": list(q.source_formats), "to": q.target_format,
                         "priority": q.priority, "needs_calibration": q.calibration_needed(scheme),
                         "help": q.scheme_help.get(scheme, "")})
    if fmt == "json":
        echo_json({"schemes": rows})
    else:
        w1 = max([len("scheme")] + [len(r["scheme"]) for r in rows])
        w2 = max([len("quantizer")] + [len(r["quantizer"]) for r in rows])
        click.echo(f"{'scheme':<{w1}}  {'quantizer':<{w2}}  formats  (needs) what it makes and what runs it")
        for r in sorted(rows, key=lambda r: (r["scheme"], -r["priority"])):
            needs = "calibration data" if r["needs_calibration"] else "no data"
            click.echo(f"{r['scheme']:<{w1}}  {r['quantizer']:<{w2}}  {'/'.join(r['from'])} -> {r['to']}  "
                       f"(needs {needs}) {r['help']}")


@plugin_command("quantize", kinds=("quantizers",))
@format_option
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("--scheme", metavar="NAME",
              help="Quantization scheme: any a registered quantizer offers (see --list-schemes). Default: the one "
                   "measured fastest at equal accuracy for MODEL's family and the output format "
                   "(docs/support-matrix.md), else int8.")
@click.option("--list-schemes", "list_schemes_", is_flag=True,
              help="List every scheme with its quantizer, what it needs and what runs it, then exit.")
@click.option("--quantizer", metavar="NAME", help="Which quantizer, when several offer the scheme.")
@click.option("--calibration", "calibration", metavar="DATASET",
              help="Dataset whose training split calibrates the quantizer (default: the dataset named in MODEL's "
                   "manifest).")
@click.option("--samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Calibration samples.")
@click.option("--to", "target", metavar="FORMAT",
              help="Output format, when installed quantizers offer several for MODEL's format.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which calibration samples are drawn.")
@click.option("--output", type=OutputFile(),
              help="Output file (default: MODEL_SCHEME beside MODEL).")
@plugin_option
@keep_failed_option
@parity_option
@memory_limit_option
@traceback_option
def quantize(fmt, model, scheme, list_schemes_, quantizer, calibration, samples, target, seed, output, plugin_options,
             keep_failed, parity) -> None:
    """Quantize MODEL with a scheme, calibrated on real data. Built in: .keras -> .tflite (int8, int8-float-io,
    int16x8, dynamic, fp16); .onnx -> .onnx (static int8 QDQ or QOperator, dynamic). The result is published only if it
    agrees with MODEL on real held-out data; otherwise exit 1 and nothing is written (with --keep-failed the
    rejected file is kept as NAME.failed.EXT). Interrupted or killed, it leaves no file behind.

    \b
    Examples:
      toolkit quantize out/cnn.keras
      toolkit quantize out/lstm.keras --scheme int8
      toolkit quantize out/cnn.onnx --calibration fashion-mnist --output out/cnn_int8.onnx
      toolkit quantize out/cnn.onnx -o activations=int8 -o method=entropy
      toolkit quantize --list-schemes
    """
    if list_schemes_:
        list_schemes(fmt)
        return
    if model is None:
        raise click.UsageError("Missing argument 'MODEL'.")
    from .. import operations
    from ..metrics import parse_thresholds
    from ..options import parse_pairs
    from .convert_cmd import report_artifact

    artifact = operations.quantize(model, scheme, calibration, output, samples=samples, seed=seed, to=target,
                                   quantizer=quantizer, options=parse_pairs(plugin_options), on_note=note,
                                   keep_failed=keep_failed, thresholds=parse_thresholds(parse_pairs(parity, "--parity", "top1=0.95")))
    report_artifact(artifact, fmt)
