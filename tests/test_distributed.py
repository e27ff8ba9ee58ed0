"""The local launcher: environment, failure and timeout handling (no JAX in the children)."""

import os
import sys
import time

import pytest

from ecos_jax import distributed

PY = sys.executable


def test_every_process_gets_its_rendezvous():
    code = (
        "import os; print(os.environ['ECOS_PROCESS_ID'], os.environ['ECOS_NUM_PROCESSES'], "
        "os.environ['ECOS_DEVICES_PER_PROCESS'], os.environ['ECOS_COORDINATOR'], "
        "os.environ.get('EXTRA'), os.environ.get('JAX_NUM_CPU_DEVICES'))"
    )
    results = distributed.launch_local(
        [PY, "-c", code], num_processes=3, devices_per_process=2, env={"EXTRA": "x"}
    )
    fields = [r.output.split() for r in results]
    assert [f[0] for f in fields] == ["0", "1", "2"]
    assert {tuple(f[1:3]) for f in fields} == {("3", "2")}
    assert len({f[3] for f in fields}) == 1 and fields[0][3].startswith("localhost:")
    assert {f[4] for f in fields} == {"x"}
    assert {f[5] for f in fields} == {"None"}  # the device count comes from ECOS_*, only
    assert all(r.returncode == 0 for r in results)


def test_a_failing_process_stops_the_others_and_is_quoted():
    code = (
        "import os, sys, time\n"
        "if os.environ['ECOS_PROCESS_ID'] == '1': print('boom'); sys.exit(3)\n"
        "time.sleep(60)\n"
    )
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="process 1 exited with code 3") as err:
        distributed.launch_local([PY, "-c", code], num_processes=2, timeout_s=50)
    assert time.monotonic() - t0 < 30  # process 0 was killed, not waited for
    assert "boom" in str(err.value)


def test_the_group_is_killed_past_its_timeout():
    with pytest.raises(RuntimeError, match="ran past timeout_s=1"):
        distributed.launch_local([PY, "-c", "import time; time.sleep(60)"], num_processes=2,
                                 timeout_s=1)  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_processes": 0}, "num_processes must be a positive int"),
        ({"num_processes": 2, "devices_per_process": 1.5}, "devices_per_process"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.launch_local([PY, "-c", "pass"], **kwargs)


def test_empty_command_is_refused():
    with pytest.raises(ValueError, match="command must name a program"):
        distributed.launch_local([], num_processes=1)


def test_initialize_from_env_is_a_no_op_outside_a_launch(monkeypatch):
    monkeypatch.delenv(distributed.ENV_COORDINATOR, raising=False)
    assert distributed.initialize_from_env() is False
    assert distributed.ENV_COORDINATOR not in os.environ
