"""Multi-controller JAX on local CPU processes: a launcher and its initialisation.

Past one host, JAX runs one process per host, each addressing its own devices, joined by
`jax.distributed.initialize`; arrays then span every process's devices and collectives
cross processes. The same program runs here as N local CPU processes that talk through
gloo: `launch_local` starts them with the rendezvous in their environment, and each calls
`initialize_from_env` before touching any device. On a real cluster, call
`jax.distributed.initialize` as the cluster requires instead; nothing else changes.

Examples:
  A launcher (`python -m experiments.scaling_study --num_processes=2 ...`) does

    results = launch_local([sys.executable, "-m", "my.module", ...], num_processes=2,
                           devices_per_process=4, timeout_s=600)

  and `my.module` begins with `initialize_from_env()`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

import jax

__all__ = [
    "ENV_COORDINATOR",
    "ENV_DEVICES",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "ProcessResult",
    "initialize_from_env",
    "launch_local",
]

ENV_COORDINATOR = "ECOS_COORDINATOR"
ENV_NUM_PROCESSES = "ECOS_NUM_PROCESSES"
ENV_PROCESS_ID = "ECOS_PROCESS_ID"
ENV_DEVICES = "ECOS_DEVICES_PER_PROCESS"

# Lines of a failed process's output quoted in the launcher's error.
_TAIL_LINES = 30


@dataclasses.dataclass(frozen=True)
class ProcessResult:
    """One launched process: its id, exit code and captured output (stdout + stderr)."""

    process_id: int
    returncode: int
    output: str


def initialize_from_env(*, timeout_s: int = 120) -> bool:
    """Joins the process group that `launch_local` started; False when not launched by it.

    Selects gloo for CPU collectives and the per-process CPU device count, then calls
    `jax.distributed.initialize`. Must run before JAX creates its backends (before the
    first `jax.devices()` or array).
    """
    if ENV_COORDINATOR not in os.environ:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if ENV_DEVICES in os.environ:
        jax.config.update("jax_num_cpu_devices", int(os.environ[ENV_DEVICES]))
    jax.distributed.initialize(
        coordinator_address=os.environ[ENV_COORDINATOR],
        num_processes=int(os.environ[ENV_NUM_PROCESSES]),
        process_id=int(os.environ[ENV_PROCESS_ID]),
        initialization_timeout=int(timeout_s),
    )
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def launch_local(
    command: Sequence[str],
    *,
    num_processes: int,
    devices_per_process: int = 1,
    timeout_s: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> list[ProcessResult]:
    """Runs `command` as `num_processes` local JAX processes joined on localhost.

    Each process gets `ECOS_PROCESS_ID`, `ECOS_NUM_PROCESSES`, `ECOS_COORDINATOR` and
    `ECOS_DEVICES_PER_PROCESS` in its environment (read by `initialize_from_env`). If one
    process fails, or the group runs past `timeout_s`, every process is killed (a
    collective would otherwise wait forever) and a `RuntimeError` quotes the failure.

    Args:
      command: the program and its arguments, e.g. `[sys.executable, "-m", "pkg.mod"]`.
      num_processes: how many processes to start.
      devices_per_process: CPU devices each process exposes.
      timeout_s: wall-clock limit for the whole group.
      env: extra environment variables for every process.

    Returns:
      One `ProcessResult` per process, by id, all with return code 0.
    """
    num_processes = _check_count(num_processes, "num_processes")
    devices_per_process = _check_count(devices_per_process, "devices_per_process")
    if not command:
        raise ValueError("command must name a program to run, got an empty sequence.")
    base = {**os.environ, **(env or {})}
    base.pop("JAX_NUM_CPU_DEVICES", None)  # the device count comes from ENV_DEVICES
    base.update(
        {
            ENV_COORDINATOR: f"localhost:{_free_port()}",
            ENV_NUM_PROCESSES: str(num_processes),
            ENV_DEVICES: str(devices_per_process),
        }
    )
    with tempfile.TemporaryDirectory(prefix="ecos_launch_") as tmp:
        logs = [pathlib.Path(tmp, f"process_{i}.log") for i in range(num_processes)]
        procs = []
        for i, log in enumerate(logs):
            with open(log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        list(command),
                        env={**base, ENV_PROCESS_ID: str(i)},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + float(timeout_s)
        failure = None
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                failure = f"process {failed[0]} exited with code {procs[failed[0]].returncode}"
                break
            if time.monotonic() > deadline:
                failure = f"the processes ran past timeout_s={timeout_s:g}"
                break
            time.sleep(0.1)
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        results = [
            ProcessResult(i, p.returncode, log.read_text(errors="replace"))
            for i, (p, log) in enumerate(zip(procs, logs, strict=True))
        ]
    if failure is None and any(r.returncode for r in results):
        bad = next(r for r in results if r.returncode)
        failure = f"process {bad.process_id} exited with code {bad.returncode}"
    if failure is not None:
        quoted = "\n".join(
            f"--- process {r.process_id} (exit {r.returncode}):\n"
            + "\n".join(r.output.splitlines()[-_TAIL_LINES:])
            for r in results
        )
        raise RuntimeError(f"launch_local: {failure}; every process was stopped.\n{quoted}")
    return results
