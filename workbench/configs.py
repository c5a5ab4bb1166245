"""What a config dataclass field declares, read from its annotation (one parser for the CLI and the checks).

Config modules use ``from __future__ import annotations``, so ``dataclasses.fields(c)[i].type`` is a
string such as ``"int | None"`` or ``"tuple[int, int] | None"``; it may also be a real type.
"""

from __future__ import annotations


def field_type(annotation: object) -> tuple[str, bool]:
    """``(base type, None allowed)``: ``"tuple[int, int] | None"`` -> ``("tuple[int, int]", True)``, ``int`` -> ``("int", False)``."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):  # split on the top-level "|" only: tuple[int | None, ...] stays whole
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    kept = [p for p in parts if p not in ("None", "NoneType")]
    return " | ".join(kept), len(kept) < len(parts)
