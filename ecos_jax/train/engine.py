"""Many training runs in one compiled step: `fit` over a leading run axis.

The runs of one setting (methods × seeds × budgets of a sweep) differ only in their data,
their keys and their initial parameters. `fit_runs` stacks their `TrainState`s on a
leading axis R and trains them together: one jitted program per step, `jax.vmap`ped over
the parameters, the optimizer state, the index sets and the keys. Each run draws its
batches from its own index set into a shared image bank, padded to the longest set (the
padding is never drawn); its batch order, augmentation keys and step keys are exactly
those `fit` gives the same key, so a run trained here ends where `fit` ends:
bit-identical on CPU (tested). Each run keeps its own work directory, with the files
`fit` writes (metrics.jsonl, TensorBoard events, checkpoints), and resumes from it.

Why one program per step and not a `lax.scan` over steps: on XLA's CPU backend the
gradient convolutions inside a while loop run 2-3× slower than at top level (measured),
and a scanned train step of the digit CNN ran 6× slower; an unrolled scan would compile
for minutes. One step per dispatch keeps the per-dispatch cost (about 1 ms) shared by R.

The run axis is split into chunks of at most `max_runs` runs when memory is the limit
(`runs_that_fit`: the compiled step's own memory estimate against the device's free
memory).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from ecos_jax._validate import check_key, positive_int
from ecos_jax.train import checkpoint
from ecos_jax.train.augment import strong_augment, weak_augment
from ecos_jax.train.loop import (
    _AUGMENTS,
    CHECKPOINT_DIR,
    METRICS_FILE,
    TENSORBOARD_DIR,
    _check_finite,
    _data_seed,
    _read_history,
    _write_history,
    batch_indices,
)
from ecos_jax.train.steps import TrainState, eval_step, train_step

__all__ = ["RunData", "evaluate_runs", "fit_runs", "runs_that_fit", "stack_states"]


class RunData(NamedTuple):
    """One run's training set: rows of the shared image bank and their targets.

    Fields:
      rows: int indices [n] into the bank `fit_runs` is given (a run's "images" are
        `bank[rows]`, in this order).
      targets: per-row targets [n, ...]: int labels, or e.g. teacher logits.
    """

    rows: np.ndarray
    targets: np.ndarray


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stacks `TrainState`s of one model and optimizer on a leading run axis."""
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.apply_fn != first.apply_fn or s.tx is not first.tx:
            raise ValueError(
                f"states[{i}] has another model or optimizer than states[0]; runs trained "
                "together must share both (build them with one model and make_optimizer setting)"
            )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def _unstack(stacked: TrainState, r: int) -> TrainState:
    return jax.tree.map(lambda leaf: leaf[r], stacked)


def _pad_runs(data: Sequence[RunData]) -> tuple[jax.Array, jax.Array]:
    """Index sets [R, n_max] and targets [R, n_max, ...], each run's padded with its first row."""
    n_max = max(len(d.rows) for d in data)
    rows = np.zeros((len(data), n_max), np.int32)
    first = np.asarray(data[0].targets)
    targets = np.zeros((len(data), n_max, *first.shape[1:]), first.dtype)
    for r, d in enumerate(data):
        n = len(d.rows)
        rows[r, :n], rows[r, n:] = d.rows, d.rows[0]
        targets[r, :n] = d.targets
        targets[r, n:] = np.asarray(d.targets)[0]
    return jnp.asarray(rows), jnp.asarray(targets)


@functools.partial(jax.jit, static_argnames=("step_fn", "augment", "fixmatch"), donate_argnums=0)
def _engine_step(
    states,
    steps_keys,
    bank,
    run_rows,
    run_targets,
    positions,
    unlabeled,
    u_rows,
    step,
    *,
    step_fn,
    augment,
    fixmatch,
):
    """One step of every run: `fit`'s per-step work, vmapped over the run axis."""

    def one(state, steps_key, rows, targets, pos, u_pos):
        idx = rows[pos]
        x, y = bank[idx], targets[pos]
        aug_key, step_key = jax.random.split(jax.random.fold_in(steps_key, step))
        if augment == "weak":
            x = weak_augment(aug_key, x)
        batch = (x, y)
        if fixmatch:
            u = unlabeled[u_pos]
            weak_key, strong_key = jax.random.split(jax.random.fold_in(aug_key, 1))
            batch = (x, y, weak_augment(weak_key, u), strong_augment(strong_key, u))
        return step_fn(state, batch, step_key)

    return jax.vmap(one)(states, steps_keys, run_rows, run_targets, positions, u_rows)


@jax.jit
def _eval_runs(states, batch):
    return jax.vmap(eval_step, in_axes=(0, None))(states, batch)


def evaluate_runs(
    states: Sequence[TrainState] | TrainState, images, labels, *, batch_size: int = 256
) -> list[dict[str, float]]:
    """`evaluate` of every run on one set, the runs vmapped (one program per batch).

    Args:
      states: `TrainState`s of one model (or one state stacked on a run axis).
      images, labels: the shared evaluation set [N, H, W, C], [N].
      batch_size: rows per evaluation batch (padded to one shape).

    Returns:
      One {"accuracy", "loss"} per run, as `evaluate` returns.
    """
    stacked = stack_states(states) if isinstance(states, Sequence) else states
    images, labels = np.asarray(images), np.asarray(labels)
    n = len(labels)
    if n == 0 or len(images) != n:
        raise ValueError(
            f"evaluate_runs needs as many images as labels (> 0), got {len(images)} and {n}"
        )
    size = min(batch_size, n)
    num_runs = jax.tree.leaves(stacked.params)[0].shape[0]
    correct, loss_sum = [0] * num_runs, [0.0] * num_runs
    for start in range(0, n, size):
        x, y = images[start : start + size], labels[start : start + size]
        if len(y) < size:  # pad to one shape; label -1 rows are not counted
            x = np.concatenate([x, np.zeros((size - len(y), *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.full(size - len(y), -1, y.dtype)])
        out = jax.device_get(_eval_runs(stacked, (x, y)))
        for r in range(num_runs):  # summed per run exactly as `evaluate` sums
            correct[r] += out["correct"][r]
            loss_sum[r] += out["loss_sum"][r]
    return [
        {"accuracy": float(correct[r]) / n, "loss": float(loss_sum[r]) / n} for r in range(num_runs)
    ]


def runs_that_fit(
    state: TrainState,
    sample_batch,
    *,
    step_fn: Callable = train_step,
    device: jax.Device | None = None,
    memory_fraction: float = 0.5,
) -> int:
    """How many runs of `state`'s model one chunk of `fit_runs` may hold on `device`.

    The estimate is the compiled single-run step's own: XLA's `memory_analysis()` of
    `step_fn` on `sample_batch` (arguments, outputs and temporaries), against
    `memory_fraction` of the device's free memory (`memory_stats()` on accelerators;
    the host's available memory on CPU, via psutil).

    Returns:
      At least 1.
    """
    device = device or jax.devices()[0]
    key = jax.random.key(0)
    compiled = jax.jit(step_fn).lower(state, sample_batch, key).compile()
    analysis = compiled.memory_analysis()
    per_run = 1 << 20
    if analysis is not None:
        per_run += (
            analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            + analysis.temp_size_in_bytes
        )
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    else:
        import psutil

        free = psutil.virtual_memory().available
    return max(1, int(memory_fraction * free) // per_run)


class _Run:
    """One run's host-side bookkeeping: its seeds, history, log files and pending metrics."""

    def __init__(self, key, state, data: RunData, workdir, unlabeled_size: int):
        data_key, self.steps_key = jax.random.split(key)
        self.seed = _data_seed(data_key)
        self.unlabeled_seed = (
            _data_seed(jax.random.fold_in(data_key, 1)) if unlabeled_size else None
        )
        self.num_examples = len(data.rows)
        self.state = state
        self.history: list[dict[str, Any]] = []
        self.metrics_path = self.ckpt_dir = self.writer = None
        self.pending: list[tuple[int, dict[str, Any]]] = []
        if workdir is not None:
            workdir = pathlib.Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            self.ckpt_dir = workdir / CHECKPOINT_DIR
            self.metrics_path = workdir / METRICS_FILE
            if checkpoint.latest_step(self.ckpt_dir) is not None:
                self.state = checkpoint.restore(self.ckpt_dir, self.state)
            self.history = _read_history(self.metrics_path, int(self.state.step))
            _write_history(self.metrics_path, self.history)
            from tensorboardX import SummaryWriter  # imported only when logging

            self.writer = SummaryWriter(str(workdir / TENSORBOARD_DIR))

    def flush(self, step: int, eval_result: dict[str, float] | None) -> None:
        """Checks the pending steps are finite and writes one log record (as `fit`)."""
        if not self.pending:
            return
        _check_finite(
            [(s, m["finite"]) for s, m in self.pending], [float(m["loss"]) for _, m in self.pending]
        )
        record: dict[str, Any] = {"step": step}
        for name in self.pending[0][1]:
            if name != "finite":
                record[name] = float(np.mean([m[name] for _, m in self.pending]))
        if eval_result is not None:
            record["eval_accuracy"], record["eval_loss"] = (
                eval_result["accuracy"],
                eval_result["loss"],
            )
        self.pending.clear()
        self.history.append(record)
        if self.metrics_path is not None:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in record.items():
                if name != "step":
                    self.writer.add_scalar(name, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit_runs(
    keys: Sequence[jax.Array],
    states: Sequence[TrainState],
    bank,
    data: Sequence[RunData],
    *,
    num_steps: int,
    batch_size: int,
    workdirs: Sequence[str | os.PathLike | None] | None = None,
    checkpoint_every: int | None = None,
    eval_images=None,
    eval_labels=None,
    log_every: int = 100,
    augment: str | None = "weak",
    progress: bool = True,
    step_fn: Callable = train_step,
    unlabeled_images=None,
    unlabeled_batch_size: int = 0,
    max_runs: int | None = None,
) -> list[tuple[TrainState, list[dict[str, Any]]]]:
    """Trains R runs together; run r ends as `fit(keys[r], states[r], bank[data[r].rows],
    data[r].targets, ...)` with the same other arguments would.

    Args:
      keys: one `jax.random.key` per run (the `key` of `fit`).
      states: one initial `TrainState` per run, all of one model and optimizer object;
        the restore targets when resuming.
      bank: the images every run draws from [M, H, W, C] in [0, 255].
      data: one `RunData` per run: its rows of `bank` and their targets.
      num_steps, batch_size, checkpoint_every, log_every, augment, progress, step_fn,
        unlabeled_images, unlabeled_batch_size: as in `fit`, shared by the runs.
      workdirs: None, or one work directory (or None) per run, as `fit`'s `workdir`.
      eval_images, eval_labels: an optional shared held-out set, evaluated at every log.
      max_runs: at most this many runs per compiled step (chunks of the run axis); None
        for all at once. `runs_that_fit` gives a value from the device's memory.

    Returns:
      One (final state, history) per run, in order, as `fit` returns them.

    Raises:
      ValueError: naming the argument, for mismatched lengths or a batch larger than a
        run's training set.
      FloatingPointError: naming the first non-finite step (as `fit`).
    """
    num_runs = len(keys)
    if num_runs == 0:
        raise ValueError("fit_runs needs at least one run (keys is empty)")
    workdirs = [None] * num_runs if workdirs is None else list(workdirs)
    for name, values in (("states", states), ("data", data), ("workdirs", workdirs)):
        if len(values) != num_runs:
            raise ValueError(
                f"{name} has {len(values)} entries for {num_runs} keys; give one per run"
            )
    for key in keys:
        check_key(key, "keys[...]")
    if augment not in _AUGMENTS:
        raise ValueError(f"augment must be one of {_AUGMENTS}, got {augment!r}")
    if num_steps < 0 or log_every < 1:
        raise ValueError(f"need num_steps >= 0 and log_every >= 1, got {num_steps}, {log_every}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1 or None, got {checkpoint_every}")
    if (eval_images is None) != (eval_labels is None):
        raise ValueError("give both eval_images and eval_labels, or neither")
    bank_size = len(bank)
    for r, d in enumerate(data):
        n = len(d.rows)
        if len(d.targets) != n:
            raise ValueError(f"data[{r}] has {n} rows but {len(d.targets)} targets")
        if not 0 < batch_size <= n:
            raise ValueError(
                f"batch_size must be in [1, {n}] (data[{r}] has {n} rows), got {batch_size}; "
                "train runs with fewer rows in a group of their own"
            )
        rows = np.asarray(d.rows)
        if rows.size and (rows.min() < 0 or rows.max() >= bank_size):
            raise ValueError(f"data[{r}].rows must index the bank's {bank_size} images")
    fixmatch = unlabeled_images is not None
    if fixmatch and not 0 < unlabeled_batch_size <= len(unlabeled_images):
        raise ValueError(
            f"unlabeled_batch_size must be in [1, len(unlabeled_images)="
            f"{len(unlabeled_images)}] when unlabeled_images is given, got {unlabeled_batch_size}"
        )
    chunk = num_runs if max_runs is None else positive_int(max_runs, "max_runs")

    device = jax.devices()[0]
    bank = jax.device_put(jnp.asarray(bank), device)
    unlabeled = (
        jax.device_put(jnp.asarray(unlabeled_images), device)
        if fixmatch
        else jnp.zeros((1,), jnp.uint8)
    )
    runs = [
        _Run(k, s, d, w, len(unlabeled_images) if fixmatch else 0)
        for k, s, d, w in zip(keys, states, data, workdirs, strict=True)
    ]
    try:
        # Runs resumed at different steps train in different cohorts.
        cohorts: dict[int, list[int]] = {}
        for r, run in enumerate(runs):
            cohorts.setdefault(int(run.state.step), []).append(r)
        bar = tqdm.tqdm(
            total=num_runs * num_steps,
            initial=sum(min(int(run.state.step), num_steps) for run in runs),
            disable=not progress,
            desc=f"fit_runs[{num_runs}]",
        )
        for start, members in sorted(cohorts.items()):
            for lo in range(0, len(members), chunk):
                part = members[lo : lo + chunk]
                _train_chunk(
                    [runs[r] for r in part],
                    [data[r] for r in part],
                    start=start,
                    num_steps=num_steps,
                    batch_size=batch_size,
                    bank=bank,
                    unlabeled=unlabeled,
                    unlabeled_batch_size=unlabeled_batch_size,
                    step_fn=step_fn,
                    augment=augment,
                    fixmatch=fixmatch,
                    log_every=log_every,
                    checkpoint_every=checkpoint_every,
                    eval_set=None if eval_images is None else (eval_images, eval_labels),
                    bar=bar,
                    device=device,
                )
        bar.close()
    finally:
        for run in runs:
            run.close()
    return [(run.state, run.history) for run in runs]


def _train_chunk(
    runs: list[_Run],
    data: list[RunData],
    *,
    start: int,
    num_steps: int,
    batch_size: int,
    bank,
    unlabeled,
    unlabeled_batch_size: int,
    step_fn,
    augment,
    fixmatch: bool,
    log_every: int,
    checkpoint_every: int | None,
    eval_set,
    bar,
    device,
) -> None:
    """Trains one chunk of runs that stand at the same step, from `start` to `num_steps`."""
    if start >= num_steps:
        return
    # Restored arrays are committed to a device and fresh ones are not: commit alike.
    stacked = jax.device_put(stack_states([run.state for run in runs]), device)
    steps_keys = jnp.stack([run.steps_key for run in runs])
    run_rows, run_targets = _pad_runs(data)
    num_unlabeled = len(unlabeled)
    for step in range(start, num_steps):
        positions = np.stack(
            [
                batch_indices(run.seed, step, num_examples=run.num_examples, batch_size=batch_size)
                for run in runs
            ]
        ).astype(np.int32)
        if fixmatch:
            u_rows = np.stack(
                [
                    batch_indices(
                        run.unlabeled_seed,
                        step,
                        num_examples=num_unlabeled,
                        batch_size=unlabeled_batch_size,
                    )
                    for run in runs
                ]
            ).astype(np.int32)
        else:
            u_rows = np.zeros((len(runs), 1), np.int32)
        stacked, metrics = _engine_step(
            stacked,
            steps_keys,
            bank,
            run_rows,
            run_targets,
            positions,
            unlabeled,
            u_rows,
            np.int32(step),
            step_fn=step_fn,
            augment=augment,
            fixmatch=fixmatch,
        )
        for r, run in enumerate(runs):
            run.pending.append((step, jax.tree.map(lambda m, r=r: m[r], metrics)))
        bar.update(len(runs))
        done = step + 1
        logging = done % log_every == 0 or done == num_steps
        saving = any(run.ckpt_dir is not None for run in runs) and (
            done == num_steps or (checkpoint_every and done % checkpoint_every == 0)
        )
        if not (logging or saving):
            continue
        for run in runs:  # host copies of the pending metrics, once
            run.pending = [(s, jax.device_get(m)) for s, m in run.pending]
        if logging:
            evals = (
                evaluate_runs(stacked, *eval_set) if eval_set is not None else [None] * len(runs)
            )
            for run, ev in zip(runs, evals, strict=True):
                run.flush(done, ev)
        if saving:
            for r, run in enumerate(runs):
                _check_finite(
                    [(s, m["finite"]) for s, m in run.pending],
                    [m["loss"] for _, m in run.pending],
                )
                if run.ckpt_dir is not None:
                    checkpoint.save(run.ckpt_dir, done, _unstack(stacked, r))
    for r, run in enumerate(runs):
        run.state = _unstack(stacked, r)
