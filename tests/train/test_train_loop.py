"""Train/eval steps, checkpoints and the resumable training loop on a tiny problem."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from tiny_problem import assert_trees_equal, fresh_state, problem

from ecos_jax.train import (
    batch_indices,
    checkpoint,
    eval_step,
    evaluate,
    fit,
    train_step,
    weak_augment,
)


def test_train_step_decreases_loss_and_learns():
    images, labels = problem()
    state = fresh_state()
    before = evaluate(state, images, labels, batch_size=8)
    losses = []
    for step in range(30):
        idx = np.arange(8 * step, 8 * step + 8) % 64
        state, metrics = train_step(
            state, (images[idx], labels[idx]), jax.random.fold_in(jax.random.key(1), step)
        )
        assert bool(metrics["finite"])
        losses.append(float(metrics["loss"]))
    after = evaluate(state, images, labels, batch_size=8)
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert after["loss"] < before["loss"]
    assert after["accuracy"] >= 0.9


def test_eval_step_skips_padding_rows():
    images, labels = problem(n=8)
    state = fresh_state()
    full = eval_step(state, (images, labels))
    padded = eval_step(state, (images, np.concatenate([labels[:5], [-1, -1, -1]])))
    head = evaluate(state, images[:5], labels[:5], batch_size=8)  # 5 rows, no padding
    assert int(full["count"]) == 8 and int(padded["count"]) == 5
    assert int(padded["correct"]) == round(head["accuracy"] * 5)
    np.testing.assert_allclose(float(padded["loss_sum"]), head["loss"] * 5, rtol=1e-5)
    assert int(full["correct"]) >= int(padded["correct"])


def test_checkpoint_round_trip_and_latest_step(tmp_path):
    images, labels = problem(n=8)
    state = fresh_state()
    assert checkpoint.latest_step(tmp_path) is None
    saved = {}
    for step in (1, 2):
        state, _ = train_step(state, (images, labels), jax.random.key(step))
        saved[step] = jax.device_get(state)
        checkpoint.save(tmp_path, step, state)
    assert checkpoint.latest_step(tmp_path) == 2
    assert_trees_equal(checkpoint.restore(tmp_path, fresh_state(seed=9)), saved[2])
    assert_trees_equal(checkpoint.restore(tmp_path, fresh_state(seed=9), step=1), saved[1])
    with pytest.raises(FileNotFoundError, match="step=5"):
        checkpoint.restore(tmp_path, fresh_state(), step=5)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.restore(tmp_path / "empty", fresh_state())


def test_interrupted_save_is_not_the_latest_checkpoint(tmp_path, monkeypatch):
    from orbax.checkpoint._src.path import atomicity  # where orbax 0.12 renames tmp → final

    def killed(*args, **kwargs):
        raise RuntimeError("killed before the rename")

    state = fresh_state()
    checkpoint.save(tmp_path, 1, state)
    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", killed)
    with pytest.raises(RuntimeError, match="killed"):
        checkpoint.save(tmp_path, 2, state)
    monkeypatch.undo()
    assert any(".orbax-checkpoint-tmp" in p.name for p in tmp_path.iterdir())
    assert checkpoint.latest_step(tmp_path) == 1
    assert_trees_equal(checkpoint.restore(tmp_path, fresh_state(seed=9)), state)
    checkpoint.save(tmp_path, 2, state)  # a retry over the leftover temporary directory
    assert checkpoint.latest_step(tmp_path) == 2


def test_resumed_fit_is_bit_identical_to_uninterrupted(tmp_path):
    images, labels = problem(n=32)
    kwargs = dict(batch_size=8, log_every=1, augment="weak", progress=False)
    key = jax.random.key(4)
    train_step._clear_cache()
    full, full_history = fit(key, fresh_state(), images, labels, num_steps=6, **kwargs)
    assert train_step._cache_size() == 1  # recompilation guard: one compile for all steps

    workdir = tmp_path / "run"
    _, first = fit(key, fresh_state(), images, labels, num_steps=3, workdir=workdir, **kwargs)
    assert checkpoint.latest_step(workdir / "checkpoints") == 3
    resumed, history = fit(
        key, fresh_state(), images, labels, num_steps=6, workdir=workdir, **kwargs
    )
    assert int(resumed.step) == 6
    assert train_step._cache_size() == 1  # resuming from a checkpoint reuses it
    assert_trees_equal(resumed.params, full.params)
    assert_trees_equal(resumed.batch_stats, full.batch_stats)
    assert len(first) == 3
    assert history == full_history
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert any((workdir / "tensorboard").iterdir())
    # A finished run resumes to itself without training.
    again, _ = fit(key, fresh_state(), images, labels, num_steps=6, workdir=workdir, **kwargs)
    assert_trees_equal(again.params, full.params)


def test_fit_logs_eval_metrics_and_checkpoints_periodically(tmp_path):
    images, labels = problem(n=32)
    _, history = fit(
        jax.random.key(0),
        fresh_state(),
        images,
        labels,
        num_steps=4,
        batch_size=8,
        workdir=tmp_path,
        checkpoint_every=2,
        eval_images=images[:12],
        eval_labels=labels[:12],
        log_every=2,
        augment=None,
        progress=False,
    )
    assert [r["step"] for r in history] == [2, 4]
    assert all(0.0 <= r["eval_accuracy"] <= 1.0 for r in history)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]


def test_nan_loss_raises_naming_the_step():
    images, labels = problem(n=32)
    images[5] = np.nan
    key = jax.random.key(2)
    seed = np.asarray(jax.random.bits(jax.random.split(key)[0], (4,), jnp.uint32))
    first_bad = next(
        s for s in range(100) if 5 in batch_indices(seed, s, num_examples=32, batch_size=8)
    )
    with pytest.raises(FloatingPointError, match=f"at step {first_bad} "):
        fit(
            key,
            fresh_state(),
            images,
            labels,
            num_steps=first_bad + 2,
            batch_size=8,
            log_every=100,
            augment=None,
            progress=False,
        )


def _epoch_orders(seed, *, num_examples, batch_size, num_epochs):
    """The concatenated batches of every epoch, [num_epochs, steps_per_epoch·batch_size]."""
    steps = num_examples // batch_size
    return np.stack(
        [
            np.concatenate(
                [
                    batch_indices(
                        seed, e * steps + i, num_examples=num_examples, batch_size=batch_size
                    )
                    for i in range(steps)
                ]
            )
            for e in range(num_epochs)
        ]
    )


def test_batch_order_is_a_fresh_permutation_every_epoch():
    seed = np.array([1, 2, 3, 4], np.uint32)
    orders = _epoch_orders(seed, num_examples=10, batch_size=3, num_epochs=300)
    # Within an epoch: 3 batches of 3 distinct examples, the 10th dropped.
    assert all(len(set(row.tolist())) == 9 for row in orders)
    # Across epochs the order is drawn afresh: the first example of an epoch and the one
    # it drops are uniform over the 10 (chi-square, 30 expected per cell). One permutation
    # reused by every epoch would put all 300 counts in one cell.
    first = np.bincount(orders[:, 0], minlength=10)
    dropped = np.array([(set(range(10)) - set(row.tolist())).pop() for row in orders])
    assert scipy.stats.chisquare(first).pvalue > 1e-3
    assert scipy.stats.chisquare(np.bincount(dropped, minlength=10)).pvalue > 1e-3
    # The order is a function of the seed: another seed, another order.
    other = _epoch_orders(seed + 1, num_examples=10, batch_size=3, num_epochs=2)
    assert not np.array_equal(other, orders[:2])


def _recording_step(seen):
    """A `step_fn` that records the batch and key it gets and leaves the state alone."""

    def step(state, batch, key):
        seen.append((np.asarray(jax.random.key_data(key)), [np.asarray(b) for b in batch]))
        return state, {"loss": jnp.float32(0.0), "finite": jnp.bool_(True)}

    return step


def test_fit_gives_every_step_its_own_key_and_augmentation():
    # Eight copies of one image: a batch differs from another only by its augmentation.
    image, _ = problem(n=1)
    images, labels = np.repeat(image, 8, axis=0), np.zeros(8, np.int32)
    key, num_steps, seen = jax.random.key(5), 4, []
    fit(
        key,
        fresh_state(),
        images,
        labels,
        num_steps=num_steps,
        batch_size=8,
        log_every=num_steps,
        augment="weak",
        progress=False,
        step_fn=_recording_step(seen),
    )
    assert len(seen) == num_steps
    # As documented: the key is split into (data key, steps key); step s folds s into the
    # steps key and splits that into (augmentation key, step_fn key).
    steps_key = jax.random.split(key)[1]
    for step, (step_key_data, (x, _)) in enumerate(seen):
        aug_key, step_key = jax.random.split(jax.random.fold_in(steps_key, step))
        np.testing.assert_array_equal(step_key_data, np.asarray(jax.random.key_data(step_key)))
        np.testing.assert_array_equal(x, np.asarray(weak_augment(aug_key, jnp.asarray(images))))
    assert len({k.tobytes() for k, _ in seen}) == num_steps
    assert len({b[0].tobytes() for _, b in seen}) == num_steps
