"""A file picker that refuses a file over its size limit in the browser, before any byte is sent.

Panel's ``FileInput`` sends the whole file, base64-encoded, in one websocket message: a file over
the server's message limit (Bokeh's 20 MiB; tornado's 10 MiB default for Jupyter's kernel
websocket) closes the connection and the page goes dead with no message. Here the browser reads
``file.size`` first: a file over ``max_bytes`` is announced to Python by its name and size only,
so the app can say why it was refused; a file within the limit is sent as one message.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import param
from panel.custom import JSComponent

# Base64 makes 4 bytes of 3; with the JSON around it a 6 MiB file stays under tornado's default
# 10 MiB websocket message limit, which Jupyter's kernel websocket keeps.
MAX_MESSAGE_FILE_BYTES = 6 * 2**20


def size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{max(n, 0) // 1024} KiB"


class SizeCheckedFileInput(JSComponent):
    """``on_file(name, data)`` gets a picked file's bytes; ``on_refused(name, size)`` a file over ``max_bytes``.

    The same file can be picked again (the input is cleared after each pick), so re-uploading an
    export is one click.
    """

    accept = param.String(default="", doc="file types the picker offers, as in <input accept=...>")
    max_bytes = param.Integer(default=MAX_MESSAGE_FILE_BYTES, bounds=(1, MAX_MESSAGE_FILE_BYTES))

    _esm = """
    export function render({ model }) {
      const input = document.createElement("input");
      input.type = "file";
      input.accept = model.accept;
      input.addEventListener("change", () => {
        const file = input.files && input.files[0];
        if (!file) return;
        input.value = "";  // the same file can be picked again
        if (file.size > model.max_bytes) {
          model.send_msg({ refused: file.name, size: file.size });
          return;
        }
        const reader = new FileReader();
        reader.onload = () => {
          const url = String(reader.result);
          model.send_msg({ name: file.name, data: url.slice(url.indexOf(",") + 1) });
        };
        reader.readAsDataURL(file);
      });
      model.on("accept", () => { input.accept = model.accept; });
      return input;
    }
    """

    def __init__(self, on_file: Callable[[str, bytes], None], on_refused: Callable[[str, int], None], **params) -> None:
        super().__init__(**params)
        self._on_file, self._on_refused = on_file, on_refused

    def _handle_msg(self, msg) -> None:
        if not isinstance(msg, dict) or not isinstance(msg.get("name", msg.get("refused")), str):
            return
        if "refused" in msg:
            size = msg.get("size")
            self._on_refused(msg["refused"], int(size) if isinstance(size, (int, float)) else self.max_bytes + 1)
            return
        try:
            data = base64.b64decode(msg.get("data") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            self._on_refused(msg["name"], -1)  # the browser sent no readable bytes
            return
        if len(data) > self.max_bytes:  # a page that skipped the browser check
            self._on_refused(msg["name"], len(data))
            return
        self._on_file(msg["name"], data)
