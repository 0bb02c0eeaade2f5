"""Drawing with matplotlib for the HTML pages (`toolkit report`, `toolkit explain`): a Figure on the Agg canvas
(no pyplot, so no global backend to switch and no display needed), rendered to PNG bytes. matplotlib is the
`report` extra and is imported only when something is drawn."""

from __future__ import annotations

import io
from typing import Any

from .errors import MissingRuntimeError


def need_matplotlib(what: str, alternative: str = "") -> None:
    """MissingRuntimeError naming `what` matplotlib would draw, and `alternative` (", or ...") in the hint."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        error = MissingRuntimeError(f"matplotlib, which draws {what},", "report")
        error.hint = f"{error.hint}{alternative}"
        raise error from None


def figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def mpl_text(text: str) -> str:
    """Text for matplotlib: a '$' in a model name must not start mathtext."""
    return str(text).replace("$", r"\$")
