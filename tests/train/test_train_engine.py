"""The engine: R runs trained in one vmapped step end where `fit` ends.

Bit for bit for a model without convolutions (so the batch order, the augmentation,
the keys, the optimizer and the logs are exactly `fit`'s); within float tolerance for the
digit CNN, whose kernel gradients XLA's CPU backend rounds differently in the batched
program (measured: 1 ulp in two of the three conv kernels after one step, with every
forward value, the loss and all other gradients bit-identical). The logged gradient
norm, a reduction over the whole parameter tree, is summed in another order in the
batched program too (1 ulp), so it is compared within tolerance.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax import train
from ecos_jax.train import engine
from tests.train.tiny_problem import OPTIMIZER, assert_trees_equal, fresh_state, problem

NUM_STEPS = 6


class _MLP(nn.Module):
    """Dense, BatchNorm, ReLU, Dense: every layer kind of the CNN but the convolution."""

    @nn.compact
    def __call__(self, images, *, train):
        x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
        x = nn.Dense(16, use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        return nn.Dense(2)(x)


MLP = _MLP()


def _mlp_state(seed):
    return train.create_train_state(
        jax.random.key(seed), MLP, OPTIMIZER, jnp.zeros((1, 8, 8, 3), jnp.float32)
    )


def _runs(num_runs=3):
    """Bank of 64 images; run r trains on its own subset of size 24 + 8r, own seed."""
    images, labels = problem(64)
    rng = np.random.default_rng(0)
    data, keys = [], []
    for r in range(num_runs):
        rows = rng.permutation(64)[: 24 + 8 * r]
        data.append(engine.RunData(rows, labels[rows]))
        keys.append(jax.random.key(100 + r))
    return images, data, keys


def _both(make_state, augment, **extra):
    images, data, keys = _runs()
    kwargs = dict(num_steps=NUM_STEPS, batch_size=8, log_every=2, augment=augment, **extra)
    sequential = [
        train.fit(k, make_state(r), images[d.rows], d.targets, progress=False, **kwargs)
        for r, (k, d) in enumerate(zip(keys, data, strict=True))
    ]
    states = [make_state(r) for r in range(len(keys))]
    together = engine.fit_runs(keys, states, images, data, progress=False, **kwargs)
    return together, sequential


@pytest.mark.parametrize("augment", ["weak", None])
def test_vmapped_runs_equal_sequential_runs_bit_for_bit(augment):
    together, sequential = _both(_mlp_state, augment)
    for (state, history), (want_state, want_history) in zip(together, sequential, strict=True):
        assert_trees_equal(state.params, want_state.params)
        assert_trees_equal(state.batch_stats, want_state.batch_stats)
        assert_trees_equal(state.opt_state, want_state.opt_state)
        assert _without_norm(history) == _without_norm(want_history)
        np.testing.assert_allclose(
            [r["grad_norm"] for r in history], [r["grad_norm"] for r in want_history], rtol=1e-6
        )


def _without_norm(history):
    return [{k: v for k, v in r.items() if k != "grad_norm"} for r in history]


def test_vmapped_cnn_runs_agree_with_sequential_runs_within_float_tolerance():
    together, sequential = _both(fresh_state, "weak")
    for (state, history), (want_state, want_history) in zip(together, sequential, strict=True):
        for got, want in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(want_state.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
        assert [r["step"] for r in history] == [r["step"] for r in want_history]
        np.testing.assert_allclose(
            [r["loss"] for r in history], [r["loss"] for r in want_history], rtol=1e-4
        )


def _mlp_runs(tmp_path, **kwargs):
    images, data, keys = _runs()
    workdirs = [tmp_path / f"run{r}" for r in range(len(keys))]
    args = dict(num_steps=NUM_STEPS, batch_size=8, log_every=2, checkpoint_every=2)
    args.update(kwargs)
    states = [_mlp_state(r) for r in range(len(keys))]
    return engine.fit_runs(
        keys, states, images, data, workdirs=workdirs, progress=False, **args
    ), workdirs


def test_each_run_logs_checkpoints_and_resumes_on_its_own(tmp_path):
    uninterrupted, _ = _mlp_runs(tmp_path / "whole")
    _mlp_runs(tmp_path / "cut", num_steps=4)  # every run stopped at step 4
    # run 1 lost its last checkpoint and the log lines after step 2
    cut = tmp_path / "cut"
    import shutil

    shutil.rmtree(cut / "run1" / "checkpoints" / "4")
    lines = (cut / "run1" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (cut / "run1" / "metrics.jsonl").write_text("".join(lines[:1]) + '{"step": 4, "lo')
    resumed, workdirs = _mlp_runs(cut)  # runs 0, 2 from step 4; run 1 from step 2
    for (state, history), (want_state, want_history) in zip(resumed, uninterrupted, strict=True):
        assert_trees_equal(state.params, want_state.params)
        assert [r["step"] for r in history] == [2, 4, 6]
        assert _without_norm(history) == _without_norm(want_history)
    for workdir in workdirs:
        assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4", "6"]
        assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
        logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
        assert logged == [2, 4, 6]


def test_chunks_of_the_run_axis_train_the_same_runs(tmp_path):
    whole, _ = _mlp_runs(tmp_path / "whole", checkpoint_every=None)
    chunked, _ = _mlp_runs(tmp_path / "chunked", checkpoint_every=None, max_runs=2)
    for (state, _), (want, _) in zip(chunked, whole, strict=True):
        assert_trees_equal(state.params, want.params)


def test_runs_that_fit_is_at_least_one_and_shrinks_with_the_memory_fraction():
    images, labels = problem(8)
    batch = (jnp.asarray(images), jnp.asarray(labels))
    many = engine.runs_that_fit(_mlp_state(0), batch)
    few = engine.runs_that_fit(_mlp_state(0), batch, memory_fraction=1e-9)
    assert many >= few == 1


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(data=lambda d: d[:2]), "data has 2 entries for 3 keys"),
        (dict(batch_size=lambda b: 1000), r"batch_size must be in \[1, 24\]"),
        (
            dict(data=lambda d: [engine.RunData(d[0].rows + 1000, d[0].targets), *d[1:]]),
            r"data\[0\].rows must index the bank's 64 images",
        ),
        (dict(augment=lambda a: "strong"), "augment must be one of"),
        (dict(max_runs=lambda m: 0), "max_runs"),
    ],
)
def test_bad_arguments_name_the_argument(change, match):
    images, data, keys = _runs()
    args = dict(data=data, batch_size=8, augment="weak", max_runs=None)
    for name, edit in change.items():
        args[name] = edit(args[name])
    with pytest.raises(ValueError, match=match):
        engine.fit_runs(
            keys,
            [_mlp_state(r) for r in range(3)],
            images,
            args.pop("data"),
            num_steps=2,
            progress=False,
            **args,
        )


def test_states_of_other_models_are_not_stacked():
    with pytest.raises(ValueError, match=r"states\[1\] has another model or optimizer"):
        engine.stack_states([_mlp_state(0), fresh_state(0)])


def test_evaluate_runs_equals_evaluate_for_each_run():
    images, labels = problem(40)
    states = [fresh_state(r) for r in range(2)]
    got = engine.evaluate_runs(states, images, labels, batch_size=16)
    for state, result in zip(states, got, strict=True):
        want = train.evaluate(state, images, labels, batch_size=16)
        assert result["accuracy"] == want["accuracy"]
        assert result["loss"] == pytest.approx(want["loss"], rel=1e-6)
