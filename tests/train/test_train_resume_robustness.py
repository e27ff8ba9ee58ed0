"""Resuming `fit` from a workdir whose metrics log a crash or corruption left damaged."""

import json

import jax
import pytest
from tiny_problem import assert_trees_equal, fresh_state, problem

from ecos_jax.train import fit, loop

KWARGS = dict(batch_size=8, log_every=1, augment="weak", progress=False)
NUM_STEPS, CHECKPOINT_STEP = 6, 3


def _fit(num_steps, workdir=None):
    images, labels = problem(n=32)
    return fit(
        jax.random.key(4),
        fresh_state(),
        images,
        labels,
        num_steps=num_steps,
        workdir=workdir,
        **KWARGS,
    )


@pytest.fixture(scope="module")
def uninterrupted():
    """The reference: final state and history of one fit of NUM_STEPS steps."""
    return _fit(NUM_STEPS)


def _interrupted_workdir(tmp_path):
    """A workdir checkpointed at CHECKPOINT_STEP, with one log record per step so far."""
    workdir = tmp_path / "run"
    _fit(CHECKPOINT_STEP, workdir)
    return workdir


def _log(workdir):
    return workdir / loop.METRICS_FILE


@pytest.mark.parametrize(
    "last_line",
    [
        pytest.param('{"step": 4, "lo', id="cut_mid_record"),  # what a crash mid-write leaves
        pytest.param('{"step": 4, "loss": 0.5}', id="no_newline"),  # cut before its newline
        pytest.param("[4, 0.5]\n", id="not_a_dict"),
        pytest.param('{"loss": 0.5}\n', id="no_step"),
        pytest.param('{"step": "4", "loss": 0.5}\n', id="str_step"),
        pytest.param('{"step": true, "loss": 0.5}\n', id="bool_step"),
        pytest.param("\xff\xfe\n", id="not_utf8"),
    ],
)
def test_resume_drops_a_damaged_last_line(tmp_path, uninterrupted, last_line):
    full, full_history = uninterrupted
    workdir = _interrupted_workdir(tmp_path)
    with _log(workdir).open("ab") as f:
        f.write(last_line.encode("latin-1"))
    resumed, history = _fit(NUM_STEPS, workdir)
    assert int(resumed.step) == NUM_STEPS
    assert_trees_equal(resumed.params, full.params)
    assert_trees_equal(resumed.batch_stats, full.batch_stats)
    assert history == full_history
    text = _log(workdir).read_text()
    assert text.endswith("\n")
    assert [json.loads(line) for line in text.splitlines()] == full_history


def test_resume_keeps_only_the_records_before_a_corrupt_middle_line(tmp_path, uninterrupted):
    full, full_history = uninterrupted
    workdir = _interrupted_workdir(tmp_path)
    lines = _log(workdir).read_text().splitlines(keepends=True)
    lines[1] = '{"step": 2, "lo\n'
    _log(workdir).write_text("".join(lines))
    resumed, history = _fit(NUM_STEPS, workdir)
    assert_trees_equal(resumed.params, full.params)  # the checkpoint, not the log, resumes
    # Steps 2 and 3 are lost from the log (not redone: they precede the checkpoint).
    want = [full_history[0], *full_history[CHECKPOINT_STEP:]]
    assert history == want
    assert [json.loads(line) for line in _log(workdir).read_text().splitlines()] == want


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ('{"step": 1}\n{"step": 2}\n{"step": 3}\n', [1, 2, 3]),
        ('{"step": 1}\n\n{"step": 2}\n', [1, 2]),  # blank lines are skipped
        ('{"step": 1}\n{"step": 2}\n{"step": 9}\n', [1, 2]),  # past the checkpoint: redone
        ('{"step": 1}\n{"step": 3}\n{"step": 2}\n', [1, 3]),  # out of order: stop there
        ('{"step": 1}\n{"step": 1}\n', [1]),  # repeated step: stop there
        ('{"step": 1}\n{"step": 2.0}\n{"step": 3}\n', [1]),  # not an int: stop there
        ('{"step": 1}\nnull\n{"step": 3}\n', [1]),
        ('{"step": 1}\n{"step": 2}', [1]),  # no final newline: cut short
        ("", []),
    ],
)
def test_read_history_trusts_the_log_up_to_its_first_bad_line(tmp_path, text, steps):
    path = tmp_path / loop.METRICS_FILE
    path.write_text(text)
    assert [r["step"] for r in loop._read_history(path, up_to_step=3)] == steps
