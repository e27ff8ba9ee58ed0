"""Where prepared datasets live: an explicit argument, else $ECOS_DATA_DIR, else a cache dir."""

from __future__ import annotations

import os
import pathlib

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "resolve_data_dir",
]

DATA_DIR_ENV = "ECOS_DATA_DIR"
DEFAULT_DATA_DIR = pathlib.Path("~/.cache/ecos_jax/tfds")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The TFDS data dir: ``data_dir``, else ``$ECOS_DATA_DIR``, else ``~/.cache/ecos_jax/tfds``.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575): benchmark data for the protocol.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return pathlib.Path(data_dir).expanduser().resolve()
