"""Helpers shared by the bad-input test files: sample images (convertible and corrupt) and a tiny
training config."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.train.config import TrainConfig

RNG = np.random.default_rng(0)  # also drawn from by tests that need other pixels
RGB = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)


def _png16_rgb(rgb: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (PIL cannot write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + (rgb[r].astype(">u2") * 257).tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


CONVERTIBLE = {  # name -> (file bytes, suffix, pixels expected exactly or None)
    "grayscale": (_encode(Image.fromarray(RGB[..., 0])), ".png", np.repeat(RGB[..., :1], 3, axis=2)),
    "grayscale+alpha": (_encode(Image.fromarray(RGB[..., 0]).convert("LA")), ".png", np.repeat(RGB[..., :1], 3, 2)),
    "rgba": (_encode(Image.fromarray(np.dstack([RGB, RGB[..., :1]]))), ".png", RGB),
    "palette": (_encode(Image.fromarray(RGB).convert("P")), ".png", None),
    "1-bit": (_encode(Image.fromarray(RGB[..., 0] > 127)), ".png", None),
    "16-bit gray": (_encode(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)), ".png", None),
    "16-bit rgb": (_png16_rgb(RGB), ".png", RGB),
    "32-bit float": (_encode(Image.fromarray(RGB[..., 0].astype(np.float32)), "TIFF"), ".tif", None),
    "cmyk jpeg": (_encode(Image.fromarray(RGB).convert("CMYK"), "JPEG"), ".jpg", None),
}
_good_png = _encode(Image.fromarray(RGB))
_good_jpg = _encode(Image.fromarray(RGB), "JPEG")
CORRUPT = {
    "truncated png": _good_png[: len(_good_png) // 2],
    "truncated jpeg": _good_jpg[: len(_good_jpg) // 2],
    "not an image": b"GIF? no, just text " * 20,
    "empty file": b"",
}


def _tiny(data: Path, out: Path, **changes) -> TrainConfig:
    """One epoch on 4 training and 2 validation images of ``data``, writing to ``out``, with ``changes``."""
    base = TrainConfig(data=str(data), out=str(out), epochs=1, batch_size=4, limit_train=4, limit_val=2, log_every=1)
    return dataclasses.replace(base, **changes)
