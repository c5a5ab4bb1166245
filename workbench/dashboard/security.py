"""Guards for what a browser can send the dashboard: paths, uploads, and where the server listens.

- :func:`safe_path` confines a path typed or picked in the UI to the data root: no ``..``
  traversal, no absolute path elsewhere, no symlink that leads out of the root.
- :func:`check_upload` accepts an uploaded image only when it is small enough, decodes as
  an image format we read, and has sane dimensions (no decompression bombs); it returns the
  same ``(H, W, 3)`` uint8 RGB array :func:`workbench.data.folder.read_image` gives.
- :func:`bind_address`: the dashboard listens on localhost unless exposing it is asked for.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from workbench.data.folder import image_to_rgb

LOCALHOST = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_SIDE = 8192  # pixels per side
MAX_UPLOAD_PIXELS = 40_000_000  # height * width, checked before any pixel is decoded
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")


class UnsafeInputError(ValueError):
    """A path or upload from the UI that is refused (the message says why and what is allowed)."""


def bind_address(expose: bool = False) -> str:
    """The interface the dashboard listens on: localhost, or every interface when ``expose`` is set."""
    return ALL_INTERFACES if expose else LOCALHOST


def safe_path(root: str | Path, user_path: str | Path) -> Path:
    """``root / user_path`` resolved, refused unless it stays inside ``root`` (symlinks followed).

    The path need not exist (a file about to be written); a relative path is taken from ``root``.
    """
    if not isinstance(user_path, (str, Path)) or not str(user_path).strip():
        raise UnsafeInputError(f"path must be a non-empty string, got {user_path!r}")
    if "\0" in str(user_path):
        raise UnsafeInputError(f"path {user_path!r} holds a NUL byte; pick a file inside the data folder")
    base = Path(root).resolve(strict=True)
    resolved = (base / user_path).resolve()  # follows symlinks, collapses '..'; '~' is just a name here
    if not resolved.is_relative_to(base):
        raise UnsafeInputError(f"path {str(user_path)!r} leads outside the data folder {base}; pick a file inside it")
    return resolved


def check_upload(
    data: bytes,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_side: int = MAX_UPLOAD_SIDE,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> np.ndarray:
    """Validate and decode an uploaded image; return ``(H, W, 3)`` uint8 RGB.

    Grayscale, RGBA, palette and 16-bit images are converted as dataset images are. The size
    limits are checked from the header, before the pixels are decoded.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnsafeInputError(f"upload must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise UnsafeInputError("upload is empty; choose an image file")
    if len(data) > max_bytes:
        raise UnsafeInputError(
            f"upload is {_size(len(data))}, over the {_size(max_bytes)} limit; downscale or recompress the image"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data)), formats=UPLOAD_FORMATS) as img:
                _check_dimensions(img.size, max_side, max_pixels)
                img.load()
                return image_to_rgb(img)
    except UnsafeInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnsafeInputError(f"upload refused as a decompression bomb ({err}); upload a smaller image") from None
    except UnidentifiedImageError:  # its message holds the repr of our BytesIO, which tells the user nothing
        raise UnsafeInputError(
            f"upload is not a readable image (no {', '.join(UPLOAD_FORMATS)} header found); upload an image file"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnsafeInputError(
            f"upload is not a readable image ({type(err).__name__}: {err}); upload a {', '.join(UPLOAD_FORMATS)} file"
        ) from None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n // 1024} KiB"


def _check_dimensions(size: tuple[int, int], max_side: int, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1 or max(width, height) > max_side or width * height > max_pixels:
        raise UnsafeInputError(
            f"uploaded image is {width}x{height} pixels; at most {max_side} per side and "
            f"{max_pixels / 1e6:.0f} megapixels are accepted: downscale it first"
        )
