"""Progress bars on stderr, so stdout stays clean for --format json."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator


@contextmanager
def training_progress(console: Any, description: str) -> Iterator[tuple[Callable, Callable]]:
    """Yields (on_start(total_steps), on_batch(epoch, batch, logs)) callbacks driving one bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=None, status="")

        def on_start(total: int) -> None:
            progress.update(task, total=total)

        def on_batch(epoch: int, batch: int, logs: dict) -> None:
            status = f"epoch {epoch + 1}  loss {logs.get('loss', 0):.3f}  acc {logs.get('accuracy', 0):.3f}"
            progress.update(task, advance=1, status=status)

        yield on_start, on_batch


@contextmanager
def steps_progress(console: Any, total: int) -> Iterator[Callable[..., None]]:
    """Yields step(description, total=None): advance a bar of named steps (total may be revised)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("starting", total=total)
        first = [True]

        def step(description: str, total: int | None = None) -> None:
            if not first[0]:
                progress.advance(task)
            first[0] = False
            progress.update(task, description=description, **({"total": total} if total else {}))

        yield step
        progress.update(task, completed=total)
