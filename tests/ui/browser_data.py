"""What the page's Bokeh models hold, read in the browser (shared by the browser tests)."""

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
