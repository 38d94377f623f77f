"""A real PostgreSQL server for the tests: initdb in a temporary directory, on loopback.

The binaries come from Debian's `postgresql` package (`.ci/run` installs it). The server
listens on 127.0.0.1 only, with trust authentication for the test user. As root (CI), it runs
as the `postgres` system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from tests.gateway.harness import free_port


def _bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    found = shutil.which("initdb") or (str(candidates[0]) if candidates else None)
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found: install Debian's postgresql package "
            "(.ci/run does)"
        )
    return Path(found).parent


class PostgresServer:
    """`host`: the address it listens on (loopback by default; the node's address for Pods,
    which then log in with `password` over scram-sha-256, from `client_cidr`)."""

    def __init__(
        self, host: str = "127.0.0.1", password: str | None = None, client_cidr: str = ""
    ) -> None:
        self.host = host
        self.password = password
        self.client_cidr = client_cidr
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="llmbudget-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        if self.client_cidr:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.client_cidr} scram-sha-256\n")
        self.resume()
        if self.password is not None:
            with psycopg.connect(self._local_dsn("postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER USER postgres PASSWORD {}").format(self.password))

    def resume(self) -> None:
        """Start the server (again, after `pause`) and wait until it accepts connections."""
        listen = ",".join(sorted({"127.0.0.1", self.host}))
        options = (
            f"-c listen_addresses='{listen}' -c port={self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60", "start",
                  "-l", str(self.root / "server.log"))  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self._local_dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _local_dsn(self, database: str) -> str:
        """Loopback, trusted: for the tests' own administration of the server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        secret = f":{self.password}" if self.password is not None else ""
        return f"postgresql://postgres{secret}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self._local_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn(name)

    def pause(self) -> None:
        """Stop the server, keeping its data: the database is unavailable until `resume`.
        A clean shutdown: with synchronous_commit off, an immediate one loses the last commits.
        """
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
