"""One test node per machine, and the undoing of nodes whose run was killed.

The bridge, the CIDRs and the iptables chains of a node are host-wide, so a node holds an
exclusive `flock` on /run/llmbudget-node.lock for its whole life; a second node refuses to
start and names the holder. The kernel drops the lock of a process that dies, so a node whose
run was SIGKILLed leaves its work directory (with the host state recorded before it started)
but not the lock: the next node to get the lock knows that any such directory is stale, stops
its leftover processes and Pod sandboxes and restores the host from its record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.controlplane.hoststate import HostState, Owner, restore

LOCK_FILE = Path("/run/llmbudget-node.lock")
HOST_STATE_FILE = "host-before.json"  # in a node's work directory
WORKDIR_PREFIX = "llmbudget-node-"


class NodeBusy(RuntimeError):
    """Another node is running on this machine (the message names its process)."""


class NodeLock:
    def __init__(self, path: Path = LOCK_FILE) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, workdir: Path) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            raise NodeBusy(
                f"another test node runs on this machine ({holder or 'unknown holder'}); "
                "only one at a time: the bridge, CIDRs and chains are host-wide"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "workdir": str(workdir)}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def processes_under(directory: Path) -> list[tuple[int, str]]:
    """(pid, program) of every process whose command line names `directory`."""
    found = []
    needle = str(directory).encode()
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and int(pid_dir.name) != os.getpid():
            found.append((int(pid_dir.name), cmdline.split(b"\0")[0].decode(errors="replace")))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def recover_stale_nodes(lock: NodeLock, crictl: Path, bridge: str) -> list[str]:
    """Undo every node whose work directory outlived it. Call it holding `lock`: then no
    other node is alive, so every such directory is stale. Returns what could not be
    restored."""
    assert lock._fd is not None, "hold the node lock first"
    left: list[str] = []
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        state = workdir / HOST_STATE_FILE
        if not state.is_file():
            continue
        _kill([pid for pid, name in processes_under(workdir) if name.endswith("kubelet")])
        socket = workdir / "containerd" / "containerd.sock"
        if socket.exists():  # containerd still up: remove the sandboxes through CRI
            subprocess.run(
                [str(crictl), f"--runtime-endpoint=unix://{socket}", "rmp", "-af"],
                capture_output=True, check=False, timeout=120,
            )  # fmt: skip
        _kill([pid for pid, _ in processes_under(workdir)])
        time.sleep(0.5)
        left += restore(HostState.load(state), Owner(workdir, bridge))
        shutil.rmtree(workdir, ignore_errors=True)
    return left
