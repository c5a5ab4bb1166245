"""What the workbench made, so that no writer deletes or overwrites what it did not create.

A folder the workbench creates (a generated dataset, a run) holds a marker, ``.workbench-owned.json``::

    {"version": 1, "kind": "synthetic-dataset", "files": ["dataset.json", "images/train/train_0000.png", ...]}

``kind`` names the writer (``synthetic-dataset``, ``run``) and ``files`` the paths it wrote, relative
and POSIX (a run lists its top-level names: ``checkpoint``, ``config.json``, ...). A writer about to
replace such a folder deletes only those and refuses a folder holding anything else, naming it.
:func:`check_output` keeps a command's output off its own inputs and off a dataset's files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.io import atomic_write_text

if TYPE_CHECKING:
    from workbench.data.folder import DatasetInfo

MARKER = ".workbench-owned.json"
MARKER_VERSION = 1
SHOWN_NAMES = 5  # names listed in a refusal before "and N more"
DATASET_FILE = "dataset.json"


class OwnershipError(ValueError):
    """A path the workbench did not create, or an input, a writer was asked to replace (the message says the fix)."""


def write_marker(folder: str | Path, kind: str, files: Iterable[str]) -> None:
    """Record that the workbench made ``folder`` and which ``files`` (relative POSIX paths) it wrote there."""
    doc = {"version": MARKER_VERSION, "kind": kind, "files": sorted(set(files))}
    atomic_write_text(Path(folder) / MARKER, json.dumps(doc, indent=0))


def read_marker(folder: str | Path, kind: str) -> dict | None:
    """The marker of ``folder`` if it says ``kind``; None when missing, unreadable, a link or of another kind."""
    path = Path(folder) / MARKER
    if path.is_symlink():
        return None  # the workbench writes its marker as a plain file; a link could claim anything
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != kind or not isinstance(doc.get("files"), list):
        return None
    if not all(isinstance(f, str) for f in doc["files"]):
        return None
    return doc


def folder_entries(folder: str | Path) -> list[str]:
    """Every file and link under ``folder`` (relative POSIX paths, the marker left out, links not followed)."""
    folder = Path(folder)
    found = []
    for top, dirs, files in os.walk(folder):
        rel = Path(top).relative_to(folder)
        found += [(rel / name).as_posix() for name in files]
        found += [(rel / name).as_posix() for name in dirs if (Path(top) / name).is_symlink()]
    return sorted(f for f in found if f != MARKER)


def foreign_entries(folder: str | Path, owned: Iterable[str]) -> list[str]:
    """The entries of ``folder`` that are not in ``owned``; a link is always foreign (the workbench writes none)."""
    owned = set(owned)
    folder = Path(folder)
    return [e for e in folder_entries(folder) if e not in owned or (folder / e).is_symlink()]


def shown(names: list[str]) -> str:
    """``"a, b, c and 4 more"``: a few names for a one-line message."""
    head = ", ".join(names[:SHOWN_NAMES])
    return head + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def dataset_paths(info: DatasetInfo) -> dict[Path, str]:
    """The dataset's own files, each with what it is: dataset.json, its marker, the image and mask folders."""
    return {
        info.root / DATASET_FILE: "is the dataset.json",
        info.root / MARKER: "is the ownership marker",
        info.root / info.image_dir: f"lies in the images ({info.image_dir}/)",
        info.root / info.mask_dir: f"lies in the ground-truth masks ({info.mask_dir}/)",
    }


def check_output(
    path: str | Path,
    option: str,
    inputs: Iterable[str | Path] = (),
    dataset: DatasetInfo | None = None,
    folder: bool = False,
) -> None:
    """Refuse an output ``path`` that is empty, equals one of ``inputs``, or is a file of ``dataset``.

    A dataset's files are its dataset.json, its marker and everything under its image and mask
    folders (every split). A ``folder`` of outputs (masks written as NAME.png) may not be the dataset
    folder itself either, where they would mix with its index. Other paths inside a dataset folder
    stay allowed on purpose: the dashboard keeps ``annotations.sqlite`` beside dataset.json, and a
    weak-label JSON or a predictions subfolder there overwrites nothing the dataset holds.
    """
    if not str(path).strip():
        raise OwnershipError(f"{option} '': an empty path means the current folder; name the {_what(folder)} to write")
    target = Path(path).resolve()
    for source in inputs:
        if target == Path(source).resolve():
            raise OwnershipError(
                f"{option} {path}: is also this command's input {source}; writing it would overwrite the input: "
                f"choose another {option}"
            )
    if dataset is None:
        return
    root = dataset.root.resolve()
    if folder and target == root:  # masks written there would mix with the dataset's index
        raise OwnershipError(
            f"{option} {path}: is the dataset folder {dataset.root} itself; write the {_what(folder)} elsewhere "
            f"(e.g. under runs/, or a new subfolder such as {Path(path) / 'predictions'})"
        )
    for base, what in dataset_paths(dataset).items():
        if target == base.resolve() or target.is_relative_to(base.resolve()):
            raise OwnershipError(
                f"{option} {path}: {what} of the dataset {dataset.root}; writing there would overwrite the "
                f"dataset: choose a {_what(folder)} outside {dataset.image_dir}/ and {dataset.mask_dir}/ "
                "(e.g. under runs/)"
            )


def _what(folder: bool) -> str:
    return "folder" if folder else "file"
