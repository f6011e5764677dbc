"""Which process a run's worker is, said so that another process can tell whether it still runs.

A pid alone names a process only inside one pid namespace on one machine, and only until the pid is
reused. The worker records, when its run starts, the host, the kernel's boot id, its pid namespace, its
pid and its start time (clock ticks after boot, from /proc/<pid>/stat): a process elsewhere cannot be
judged from here, and a live process with the same pid but another start time is not the worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

# metadata keys of the engine event the instance storage writes after a run's RUN_START (instance_storage.py)
HOST, BOOT_ID, PID_NAMESPACE, PID, START_TICKS = (
    "worker_host", "worker_boot_id", "worker_pid_namespace", "worker_pid", "worker_start_ticks",
)
IDENTITY_KEYS = (HOST, BOOT_ID, PID_NAMESPACE, PID, START_TICKS)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot; None if it is gone or a zombie."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command)": state is field 3, starttime field 22
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def this_process() -> dict[str, str | int] | None:
    """This process's identity, or None where there is no /proc to take it from (then nothing is recorded
    and the run is left to Dagster's run monitoring)."""
    namespace, boot_id, ticks = _pid_namespace(), _read("/proc/sys/kernel/random/boot_id"), start_ticks(os.getpid())
    if namespace is None or boot_id is None or ticks is None:
        return None
    return {HOST: socket.gethostname(), BOOT_ID: boot_id, PID_NAMESPACE: namespace, PID: os.getpid(), START_TICKS: ticks}


def verdict(recorded: Mapping[str, str | int] | None) -> str:
    """"alive", "dead", or "not visible" (no identity recorded, another host, another pid namespace) for the
    worker `recorded` describes, judged from this process."""
    here = this_process()
    if recorded is None or here is None or any(key not in recorded for key in IDENTITY_KEYS):
        return "not visible"
    if recorded[HOST] != here[HOST]:
        return "not visible"
    if recorded[BOOT_ID] != here[BOOT_ID]:
        return "dead"  # this host restarted since: every process of that boot is gone
    if recorded[PID_NAMESPACE] != here[PID_NAMESPACE]:
        return "not visible"  # a container's worker: its pids mean other processes here
    return "alive" if start_ticks(int(recorded[PID])) == int(recorded[START_TICKS]) else "dead"
