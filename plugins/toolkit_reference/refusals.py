"""The one line the reference backend refuses a model with: every operator it does not implement and every use
its kernels do not cover, each with how many nodes and some of their names, short enough that the CLI never has
to cut it (it cuts a message at 400 characters): names are shortened, then fewer are shown, never an operator."""

from __future__ import annotations

LINE_CHARS = 300  # leaves room for the file and backend the CLI puts before it
NAME_CHARS = 40  # a node name longer than this shows its end, the most telling part of a converter's path


def refusal(missing: dict[tuple[str, str | None], list[str]]) -> str | None:
    """`missing` maps (operator, the use not covered or None) to the names of its nodes; None when empty."""
    if not missing:
        return None
    entries = sorted(missing.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    for shown in (3, 1, 0):
        line = "reference backend does not implement " + "; ".join(
            f"{op} ({why + '; ' if why else ''}{_nodes(names, shown)})" for (op, why), names in entries)
        if len(line) <= LINE_CHARS:
            break
    return line


def _nodes(names: list[str], shown: int) -> str:
    count = f"{len(names)} node{'s' if len(names) != 1 else ''}"
    if not shown:
        return count
    listed = ", ".join(_short(n) for n in names[:shown])
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return f"{count}: {listed}{more}"


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else "..." + name[-(NAME_CHARS - 3):]
