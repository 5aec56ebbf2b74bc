"""What a dataset folder holds: its entries as a dataset reads them.

Hidden entries (names starting with ``.``: the ``.ipynb_checkpoints/`` Jupyter leaves in every
folder it opens, ``.DS_Store``) are not part of a dataset, so they never become a class, an
image or a document; a broken symbolic link is refused by name, since the file it stood for
would otherwise be left out unseen."""

from __future__ import annotations

import os
from pathlib import Path

from gmbench.core.errors import DatasetError

__all__ = ["listing"]


def listing(folder: Path) -> list[Path]:
    """The entries of ``folder`` that make a dataset, sorted by name.

    Raises:
        DatasetError: an entry is a broken symbolic link.
    """
    entries = sorted(e for e in folder.iterdir() if not e.name.startswith("."))
    for e in entries:
        if e.is_symlink() and not e.exists():
            raise DatasetError(f"{e} is a broken symbolic link (to {os.readlink(e)}, which "
                               "does not exist); restore the file it points to, or remove "
                               "the link.")
    return entries
