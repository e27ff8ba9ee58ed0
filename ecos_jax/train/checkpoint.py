"""Checkpoints of training state: orbax kept behind three functions (its API moves).

A checkpoint of step s lives in `directory/<s>`. orbax writes it under a temporary name
(`<s>.orbax-checkpoint-tmp-...`) and renames it when complete, so an interrupted save
leaves no directory named `<s>` and `latest_step` ignores it. (That is orbax's behaviour
on local and network filesystems; on GCS it marks completion with a commit file instead,
which `latest_step` does not read.)
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import orbax.checkpoint as ocp

__all__ = ["latest_step", "restore", "save"]


def _step_dir(directory: str | os.PathLike, step: int) -> pathlib.Path:
    """The directory holding the checkpoint of `step`."""
    return pathlib.Path(directory).absolute() / str(step)


def save(directory: str | os.PathLike, step: int, state: Any) -> pathlib.Path:
    """Saves the pytree `state` as the checkpoint of `step`, blocking until it is complete.

    Args:
      directory: the checkpoint directory (created if missing).
      step: a non-negative step number; an existing checkpoint of the same step is replaced.
      state: a pytree of arrays (e.g. a `TrainState`).

    Returns:
      The path of the written checkpoint.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    path = _step_dir(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, state, force=True)
        checkpointer.wait_until_finished()
    return path


def latest_step(directory: str | os.PathLike) -> int | None:
    """The largest step with a complete checkpoint in `directory`, or None if there is none.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    root = pathlib.Path(directory)
    if not root.is_dir():
        return None
    steps = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(steps, default=None)


def restore(directory: str | os.PathLike, target: Any, step: int | None = None) -> Any:
    """Restores the checkpoint of `step` (default: the latest) into the structure of `target`.

    Args:
      directory: the checkpoint directory.
      target: a pytree with the saved structure (e.g. a freshly created `TrainState`);
        its non-array fields (apply_fn, tx) are kept, its arrays give shapes and dtypes.
      step: which checkpoint; None for `latest_step(directory)`.

    Returns:
      `target` with the saved arrays.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    if step is None:
        step = latest_step(directory)
        if step is None:
            raise FileNotFoundError(
                f"no complete checkpoint in directory={str(directory)!r}; save one first"
            )
    path = _step_dir(directory, step)
    if not path.is_dir():
        raise FileNotFoundError(
            f"no checkpoint of step={step} in directory={str(directory)!r}; "
            f"latest is {latest_step(directory)}"
        )
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(path, target)
