"""`toolkit train`: train a model family on a dataset, with a progress bar."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (PluginOptionsCommand, echo_json, format_option, memory_limit_option, note, plugin_option,
                      traceback_option)


class TrainCommand(PluginOptionsCommand):
    """--help ends with the model families, their options and the datasets the loaded plugins offer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, kinds=("models",), **kwargs)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        from .. import plugins

        try:
            regs = plugins.registries()
        except Exception:  # help must show even when a plugin is broken
            return
        with formatter.section("Model families"):
            formatter.write_dl([(m.name, f"default dataset {m.default_dataset}. {m.description}")
                                for m in regs.models] or [("(none)", "install a plugin that registers models")])
        with formatter.section("Datasets"):
            formatter.write_dl([(d.name, f"{d.task}. {d.description}") for d in regs.datasets]
                               + [("FILE.csv|.npz", "your own data (docs/model-families.md)")])


@click.command("train", cls=TrainCommand)
@click.argument("model")
@click.option("--dataset", metavar="NAME",
              help="Dataset to train on (default: the model's own, e.g. fashion-mnist for cnn, german-credit for mlp).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Passes over the training split (default: what suits the dataset, 2 for fashion-mnist).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Training batch size.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
              help="The optimizer's learning rate (default: the family's, 0.001 for the built-in ones).")
@click.option("--validation-split", type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
              help="Share of the training split held out to watch the validation loss (default: none).")
@click.option("--early-stopping", "patience", type=click.IntRange(min=1), metavar="EPOCHS",
              help="Stop when the validation loss has not improved for EPOCHS epochs and keep the best weights "
                   "(takes a 0.1 validation split when none is given).")
@click.option("--limit", type=click.IntRange(min=1), help="Train on only the first N training samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights and shuffling.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Folder for MODEL.keras, its manifest and metrics.json.")
@plugin_option
@format_option
@memory_limit_option
@traceback_option
def train(model, dataset, epochs, batch_size, learning_rate, validation_split, patience, limit, seed, output_dir,
          plugin_options, fmt) -> None:
    """Train MODEL (a model family, e.g. cnn); write MODEL.keras, its manifest and metrics.json into --output.
    A text model's vocabulary is written beside it (MODEL.keras.vocab.txt) and travels with every artifact.

    \b
    Examples:
      toolkit train cnn --dataset fashion-mnist --epochs 2 --output out/
      toolkit train lstm -o cell=gru --early-stopping 5
      toolkit train transformer --dataset fine-foods
    """
    from rich.console import Console

    from .. import operations, plugins
    from ..options import parse_pairs
    from .progress import training_progress

    regs = plugins.registries()
    regs.models.get(model)  # an unknown family fails first, with a suggestion
    dataset, notes = operations.dataset_for(model, dataset)
    for text in notes:
        note(text)
    epochs = epochs or regs.datasets.get(dataset).suggested_epochs
    console = Console(stderr=True)
    with training_progress(console, f"training {model} on {dataset}") as (on_start, on_batch):
        # Only what the user gave: a third-party family written before these options keeps working.
        given = {k: v for k, v in (("learning_rate", learning_rate), ("validation_split", validation_split),
                                   ("early_stopping", patience)) if v is not None}
        artifact, metrics = operations.train(model, dataset, epochs, output_dir, on_start=on_start,
                                             on_batch=on_batch, batch_size=batch_size, limit=limit, seed=seed,
                                             model_options=parse_pairs(plugin_options), **given)
    if fmt == "json":
        echo_json({"model": str(artifact.path), "manifest": artifact.manifest.to_dict(), "metrics": metrics})
        return
    baseline = (f" (always guessing the most common class: {metrics['baseline_accuracy'] * 100:.2f}%)"
                if "baseline_accuracy" in metrics else "")
    if "baseline_mae" in metrics:
        baseline = (f" ({metrics.get('baseline', 'baseline')}: MAE {metrics['baseline_mae']:.4g}, "
                    f"RMSE {metrics['baseline_rmse']:.4g})")
    score = (f"test accuracy {metrics['accuracy'] * 100:.2f}%{baseline}" if "accuracy" in metrics else
             ", ".join(f"test {k.upper()} {metrics[k]:.4g}" for k in ("mae", "rmse") if k in metrics) + baseline)
    ran = metrics.get("epochs_run", epochs)
    runs = f"{ran} of {epochs} epochs, stopped early" if ran < epochs else f"{epochs} epoch{'s' if epochs != 1 else ''}"
    click.echo(f"Trained {model} on {dataset} ({metrics.get('train_samples')} samples, {runs}, "
               f"{metrics.get('train_seconds', 0):.0f} s): {score} on {metrics.get('test_samples')} held-out samples")
    beside = "".join(f", {artifact.path.name}{suffix}" for suffix in artifact.manifest.extra.get("files", {}))
    click.echo(f"Wrote {artifact.path}, {artifact.path.name}.manifest.json{beside} and metrics.json in {output_dir}")
