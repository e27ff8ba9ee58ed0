"""The host training loop: deterministic batches, per-step keys, logs, checkpoints, resume.

Everything random in step s comes from the run key folded with s, and the batch order of epoch e
from a seed derived from `key` and e, so a run killed after a checkpoint and restarted
with the same arguments ends with bit-identical parameters to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from ecos_jax._validate import check_key
from ecos_jax.train import checkpoint
from ecos_jax.train.augment import strong_augment, weak_augment
from ecos_jax.train.steps import TrainState, eval_step, train_step

__all__ = ["batch_indices", "evaluate", "fit", "predict_features", "predict_logits"]

_AUGMENTS = ("weak", None)
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"


def _data_seed(key: jax.Array) -> np.ndarray:
    """Host-side seed words for the batch order, derived from `key`."""
    return np.asarray(jax.random.bits(key, (4,), jnp.uint32))


def batch_indices(seed: np.ndarray, step: int, *, num_examples: int, batch_size: int):
    """Indices of the batch of `step`: epoch-wise permutations, the remainder dropped.

    Args:
      seed: seed words for `np.random.default_rng` (one sequence per run).
      step: the step number (0-based).
      num_examples: size of the training set.
      batch_size: examples per batch, at most `num_examples`.

    Returns:
      int64 indices [batch_size].

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    steps_per_epoch = num_examples // batch_size
    epoch, i = divmod(step, steps_per_epoch)
    order = np.random.default_rng([*np.asarray(seed).tolist(), epoch]).permutation(num_examples)
    return order[i * batch_size : (i + 1) * batch_size]


def evaluate(state: TrainState, images, labels, *, batch_size: int = 256) -> dict[str, float]:
    """Accuracy and mean cross-entropy over a whole set, in fixed-size padded batches.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0 or len(images) != n:
        raise ValueError(
            f"evaluate needs as many images as labels (> 0), got {len(images)} and {n}"
        )
    size = min(batch_size, n)
    totals = {"correct": 0, "loss_sum": 0.0, "count": 0}
    for start in range(0, n, size):
        x = images[start : start + size]
        y = labels[start : start + size]
        if len(y) < size:  # pad to one shape; label -1 rows are not counted
            x = np.concatenate([x, np.zeros((size - len(y), *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.full(size - len(y), -1, y.dtype)])
        out = jax.device_get(eval_step(state, (x, y)))
        for name in totals:
            totals[name] += out[name]
    return {
        "accuracy": float(totals["correct"]) / n,
        "loss": float(totals["loss_sum"]) / n,
    }


def predict_logits(state: TrainState, images, *, batch_size: int = 256) -> np.ndarray:
    """Eval-mode logits [N, C] of a whole set, in fixed-size padded batches (one compile).

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    return _in_batches(_logits, state, images, batch_size, "predict_logits")


def predict_features(state: TrainState, images, *, batch_size: int = 256) -> np.ndarray:
    """Eval-mode penultimate features [N, F] of a whole set (the model's `features=True`
    output), in fixed-size padded batches: e.g. a student's space for a kNN.

    References:
      Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision."
      CVPR 2020 (the kNN space refined with the student's features).
    """
    return _in_batches(_features, state, images, batch_size, "predict_features")


def _in_batches(forward, state: TrainState, images, batch_size: int, caller: str) -> np.ndarray:
    """`forward(state, batch)` over `images` in padded batches of one shape, concatenated."""
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError(f"{caller} needs at least one image")
    size = min(batch_size, n)
    out = []
    for start in range(0, n, size):
        x = images[start : start + size]
        valid = len(x)
        if valid < size:
            x = np.concatenate([x, np.zeros((size - valid, *x.shape[1:]), x.dtype)])
        out.append(np.asarray(forward(state, x))[:valid])
    return np.concatenate(out)


@jax.jit
def _logits(state: TrainState, images) -> jax.Array:
    """Eval-mode forward pass (BatchNorm running statistics)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return state.apply_fn(variables, images, train=False)


@jax.jit
def _features(state: TrainState, images) -> jax.Array:
    """Eval-mode penultimate features (BatchNorm running statistics)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return state.apply_fn(variables, images, train=False, features=True)


def _check_finite(finite_flags: list[tuple[int, jax.Array]], losses) -> None:
    """Raises FloatingPointError naming the first step whose loss or gradient was not finite."""
    if not finite_flags:
        return
    flags = np.asarray(jax.device_get([f for _, f in finite_flags]))
    if not flags.all():
        first = int(np.argmin(flags))
        step = finite_flags[first][0]
        raise FloatingPointError(
            f"non-finite loss or gradient at step {step} (loss={float(losses[first])}); "
            "lower the learning rate or check the inputs for NaN/inf"
        )


def _read_history(path: pathlib.Path, up_to_step: int) -> list[dict[str, Any]]:
    """Metrics records of steps <= `up_to_step` (later ones are redone after a resume).

    The log is trusted up to its first line that is not a complete record: a JSON object
    with an int "step" above the previous record's, ended by a newline. That line and all
    after it are dropped. A crash mid-write leaves such a line last (and its step is past
    the checkpoint, so it is redone); a corrupt line in the middle means the records after
    it cannot be trusted to belong to this run in order, so they are dropped too.
    """
    if not path.exists():
        return []
    # What follows the last newline is empty, or a last record cut short by a crash.
    lines = path.read_bytes().split(b"\n")[:-1]
    records: list[dict[str, Any]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # also bytes that are not UTF-8
            break
        # A record is a dict whose "step" is an int (not a bool) above the previous one's.
        step = record.get("step") if isinstance(record, dict) else None
        if type(step) is not int or (records and step <= records[-1]["step"]):
            break
        if step > up_to_step:
            break
        records.append(record)
    return records


def _write_history(path: pathlib.Path, history: list[dict[str, Any]]) -> None:
    """Replaces the metrics log by `history` atomically (temporary file + `os.replace`)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, path)


def fit(
    key: jax.Array,
    state: TrainState,
    images,
    labels,
    *,
    num_steps: int,
    batch_size: int,
    workdir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    eval_images=None,
    eval_labels=None,
    log_every: int = 100,
    augment: str | None = "weak",
    progress: bool = True,
    step_fn: Callable = train_step,
    unlabeled_images=None,
    unlabeled_batch_size: int = 0,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains `state` for `num_steps` supervised steps; resumes from `workdir` if it holds one.

    `key` is split into a data key (the seed of the batch order, `batch_indices`) and a
    step key; step s uses `fold_in(step_key, s)`, split into an augmentation key and the
    `train_step` key. So a resumed run reproduces an uninterrupted one exactly.

    Args:
      key: the run's `jax.random.key`.
      state: the initial `TrainState` (also the restore target when resuming); its buffers
        are donated to the first step, so do not use it after the call.
      images: training images [N, H, W, C] in [0, 255] (host or device array).
      labels: int labels [N], or any per-example targets [N, ...] that `step_fn` reads
        (e.g. teacher logits for `distill_step`).
      num_steps: total steps of the run (the state's step counts towards it).
      batch_size: examples per step, at most N.
      workdir: if given: checkpoints in `workdir/checkpoints` (resumed from), metrics as
        JSON lines in `workdir/metrics.jsonl`, TensorBoard events in `workdir/tensorboard`.
      checkpoint_every: save every this many steps (and always at the end) when `workdir`
        is given; None saves at the end only.
      eval_images, eval_labels: optional held-out set evaluated at every log and the end.
      log_every: steps between log records (mean train loss and accuracy since the last).
      augment: "weak" (pad-2 random crop via `weak_augment`) or None.
      progress: show a tqdm progress bar.
      step_fn: the jitted step, `(state, batch, key) -> (state, metrics)`: `train_step`
        (default), `distill_step`, or with `unlabeled_images` a FixMatch-style step
        (`functools.partial(fixmatch_step, threshold=...)`) whose batch is
        (images, labels, unlabeled weak view, unlabeled strong view).
      unlabeled_images: optional unlabeled set [M, H, W, C]; each step then draws
        `unlabeled_batch_size` of them (their own epoch-wise order) and passes a weak and
        a strong (`strong_augment`) view to `step_fn`.
      unlabeled_batch_size: unlabeled examples per step (μ·B), in [1, M] when given.

    Returns:
      (final state, history): history is the list of log records {"step", "loss",
      "accuracy", "grad_norm" and any other metric of `step_fn` (means since the
      previous record), and with an eval set "eval_accuracy", "eval_loss"}, including
      those of earlier (resumed) segments.

    Raises:
      FloatingPointError: naming the first step (0-based, as in `batch_indices`) whose loss
        or gradient is NaN/inf; checked at every log and before every checkpoint.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    check_key(key, "key")
    if augment not in _AUGMENTS:
        raise ValueError(f"augment must be one of {_AUGMENTS}, got {augment!r}")
    num_examples = len(labels)
    if len(images) != num_examples:
        raise ValueError(f"images and labels differ in length: {len(images)} vs {num_examples}")
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size must be in [1, len(labels)={num_examples}], got {batch_size}")
    if num_steps < 0 or log_every < 1:
        raise ValueError(f"need num_steps >= 0 and log_every >= 1, got {num_steps}, {log_every}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1 or None, got {checkpoint_every}")
    if (eval_images is None) != (eval_labels is None):
        raise ValueError("give both eval_images and eval_labels, or neither")
    if unlabeled_images is not None and not 0 < unlabeled_batch_size <= len(unlabeled_images):
        raise ValueError(
            f"unlabeled_batch_size must be in [1, len(unlabeled_images)="
            f"{len(unlabeled_images)}] when unlabeled_images is given, got {unlabeled_batch_size}"
        )

    history: list[dict[str, Any]] = []
    writer = None
    metrics_path = ckpt_dir = None
    if workdir is not None:
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt_dir = workdir / CHECKPOINT_DIR
        metrics_path = workdir / METRICS_FILE
        if checkpoint.latest_step(ckpt_dir) is not None:
            state = checkpoint.restore(ckpt_dir, state)
        # Rewritten clean: records past the checkpoint are redone, a damaged tail is dropped.
        history = _read_history(metrics_path, int(state.step))
        _write_history(metrics_path, history)
        from tensorboardX import SummaryWriter  # imported only when logging

        writer = SummaryWriter(str(workdir / TENSORBOARD_DIR))

    # Restored arrays are committed to a device and fresh ones are not, which jit keys its
    # cache on: commit both alike so a resumed run reuses the compiled steps.
    device = jax.devices()[0]
    state = jax.device_put(state, device)
    images = jax.device_put(jnp.asarray(images), device)
    labels = jax.device_put(jnp.asarray(labels), device)
    data_key, steps_key = jax.random.split(key)
    seed = _data_seed(data_key)
    if unlabeled_images is not None:
        unlabeled_images = jax.device_put(jnp.asarray(unlabeled_images), device)
        # Its own order: the labeled batches are those of a supervised run with this key.
        unlabeled_seed = _data_seed(jax.random.fold_in(data_key, 1))
    start = int(state.step)
    pending: list[tuple[int, dict[str, jax.Array]]] = []

    def flush(step: int) -> None:
        """Checks finiteness of the pending steps and writes one log record."""
        if not pending:
            return
        host = jax.device_get([m for _, m in pending])
        _check_finite([(s, m["finite"]) for s, m in pending], [float(h["loss"]) for h in host])
        record: dict[str, Any] = {"step": step}
        for name in host[0]:
            if name != "finite":
                record[name] = float(np.mean([h[name] for h in host]))
        if eval_images is not None:
            ev = evaluate(state, eval_images, eval_labels)
            record["eval_accuracy"], record["eval_loss"] = ev["accuracy"], ev["loss"]
        pending.clear()
        history.append(record)
        if metrics_path is not None:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if writer is not None:
            for name, value in record.items():
                if name != "step":
                    writer.add_scalar(name, value, step)
            writer.flush()

    bar = tqdm.tqdm(total=num_steps, initial=start, disable=not progress, desc="fit")
    try:
        for step in range(start, num_steps):
            idx = batch_indices(seed, step, num_examples=num_examples, batch_size=batch_size)
            x, y = images[idx], labels[idx]
            aug_key, step_key = jax.random.split(jax.random.fold_in(steps_key, step))
            if augment == "weak":
                x = weak_augment(aug_key, x)
            batch = (x, y)
            if unlabeled_images is not None:
                u_idx = batch_indices(
                    unlabeled_seed,
                    step,
                    num_examples=len(unlabeled_images),
                    batch_size=unlabeled_batch_size,
                )
                u = unlabeled_images[u_idx]
                weak_key, strong_key = jax.random.split(jax.random.fold_in(aug_key, 1))
                batch = (x, y, weak_augment(weak_key, u), strong_augment(strong_key, u))
            state, metrics = step_fn(state, batch, step_key)
            pending.append((step, metrics))
            bar.update()
            done = step + 1
            if done % log_every == 0 or done == num_steps:
                flush(done)
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if ckpt_dir is not None and (
                done == num_steps or (checkpoint_every and done % checkpoint_every == 0)
            ):
                # Never checkpoint a non-finite state.
                _check_finite(
                    [(s, m["finite"]) for s, m in pending], [m["loss"] for _, m in pending]
                )
                checkpoint.save(ckpt_dir, done, state)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return state, history
