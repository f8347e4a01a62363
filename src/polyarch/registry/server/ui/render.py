"""Jinja2 over the package's templates (autoescaped: every name, label and annotation is HTML-escaped), the one
stylesheet, and the headers every page carries (a CSP allowing only our stylesheet: no script, no external
asset)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse, Response

__all__ = ["HEADERS", "Renderer", "human_size", "matrix_cells"]

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def human_size(n: int | None) -> str:
    """``1.5 MB`` (decimal units, as ``docker images``)."""
    if not n:
        return "0 B"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


_SYMBOL = {"native": "✓ native", "mismatch": "✗ mismatch", "missing": "– missing"}


def matrix_cells(cells: list[dict[str, Any]]) -> Markup:
    """The ``<td>`` cells of one matrix row, escaped here (the hot loop of a 10 000-row page; same output as a
    template would give)."""
    out = []
    for c in cells:
        state = c["state"]
        text = _SYMBOL.get(state) or f"… {state}"
        if state != "missing":
            text += f" · {human_size(c['size'])}"
        title = f' title="{escape(c["detail"])}"' if c["detail"] else ""
        out.append(f'<td class="cell {escape(state)}"{title}>{escape(text)}</td>')
    return Markup("".join(out))


def _memo_cells(cells: list[dict[str, Any]], memo: dict[int, Markup]) -> Markup:
    """``matrix_cells`` once per cell list of a page (rows of one digest share theirs)."""
    key = id(cells)
    html = memo.get(key)
    if html is None:
        html = memo[key] = matrix_cells(cells)
    return html


class Renderer:
    """Templates loaded once from the package; ``page`` renders one to a response."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("polyarch.registry.server.ui", "templates"),
                                      autoescape=True, trim_blocks=True,
                                      lstrip_blocks=True, auto_reload=False)
        self.env.filters["size"] = human_size
        self.env.filters["cells"] = _memo_cells
        self.stylesheet = resources.files("polyarch.registry.server.ui").joinpath("static/style.css").read_bytes()

    def page(self, name: str, context: dict[str, Any], *, status: int = 200,
             headers: dict[str, str] | None = None) -> Response:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})

    def css(self) -> Response:
        return Response(self.stylesheet, media_type="text/css",
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})
