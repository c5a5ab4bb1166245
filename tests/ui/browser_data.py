"""Browser helpers shared by the browser tests: what the page's Bokeh models hold, and what went wrong in the page."""

from __future__ import annotations


def browser_points(page) -> int:
    """Points in the canvas's Bokeh data source, read in the browser (-1 when none is found)."""
    return page.evaluate(
        """() => {
          for (const doc of window.Bokeh.documents)
            for (const m of doc.all_models)
              if (m.data && m.data.id !== undefined && m.data.color !== undefined)
                return m.data.x.length;
          return -1;
        }"""
    )


def watch_page(page, host: str = "localhost") -> list[str]:
    """Console errors, page errors and requests to anything but this machine (``host``), as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((f"http://{host}", f"ws://{host}", "data:", "blob:"))
            else problems.append(f"request off the machine: {r.url}")
        ),
    )
    return problems


def active_draw_tool(page) -> str | None:
    """The drawing tool active in the browser (the server switches it after a click on the tool buttons)."""
    return page.evaluate(
        """() => {
          for (const doc of window.Bokeh.documents)
            for (const m of doc.all_models)
              if (["PointDrawTool", "FreehandDrawTool"].includes(m.type) && m.active) return m.type;
          return null;
        }"""
    )
