"""Bad inputs of workbench.dashboard.security: the bind address, paths from the UI that would leave the
data root, and uploads that are empty, too large, corrupt or decompression bombs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.bad_inputs import CONVERTIBLE, CORRUPT, RGB, _encode, _good_png
from workbench.dashboard.security import UnsafeInputError, bind_address, check_upload, safe_path


def test_the_dashboard_listens_on_localhost_unless_told_otherwise():
    assert bind_address() == "127.0.0.1" and bind_address(expose=True) == "0.0.0.0"


@pytest.mark.parametrize(
    "user_path",
    ["../secrets.txt", "images/../../secrets.txt", "/etc/passwd", "link_out/secrets.txt", "a\0b", "", "   ", 5, None],
    ids=["dotdot", "nested dotdot", "absolute", "symlink out", "nul", "empty", "blank", "int", "None"],
)
def test_paths_from_the_ui_cannot_leave_the_data_root(tmp_path, user_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (tmp_path / "secrets.txt").write_text("no")
    (root / "link_out").symlink_to(tmp_path)
    with pytest.raises(UnsafeInputError):
        safe_path(root, user_path)


def test_paths_inside_the_data_root_are_allowed(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "link_in").symlink_to(root / "images")
    assert safe_path(root, "images/a.png") == (root / "images" / "a.png").resolve()
    assert safe_path(root, str(root / "images")) == (root / "images").resolve()
    assert safe_path(root, "link_in/b.png") == (root / "images" / "b.png").resolve()
    assert safe_path(root, "images/../runs/new.sqlite") == (root / "runs" / "new.sqlite").resolve()


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb's header."""
    return _encode(Image.new("1", (width, height)))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "upload is empty"),
        (_good_png * 3, r"upload is \d+ KiB, over the \d+ KiB limit; downscale or recompress"),
        (CORRUPT["truncated png"], "not a readable image"),
        (CORRUPT["not an image"], "not a readable image"),
        (_encode(Image.fromarray(RGB), "GIF"), "not a readable image.*PNG, JPEG"),
        (_png_header_only(9000, 10), r"9000x10 pixels; at most 8192 per side"),
        (_png_header_only(7000, 7000), r"7000x7000 pixels; .*40 megapixels"),
        ("a string", "upload must be bytes, got str"),
    ],
    ids=["empty", "too large", "truncated", "not an image", "gif", "too wide", "too many pixels", "str"],
)
def test_bad_uploads_are_refused(data, message):
    limit = len(_good_png) * 2 if "limit" in message else 20 * 2**20
    with pytest.raises(UnsafeInputError, match=message):
        check_upload(data, max_bytes=limit)


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "16-bit gray", "16-bit rgb", "palette"])
def test_uploads_that_need_converting_work(kind):
    image = check_upload(CONVERTIBLE[kind][0])
    assert image.shape == (20, 24, 3) and image.dtype == np.uint8
