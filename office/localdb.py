"""A private PostgreSQL cluster from the machine's own PostgreSQL packages: `initdb` into a folder, a Unix socket in
that folder only (no TCP port), started and stopped with `pg_ctl`. For tests, benchmarks and trying the back
office out; a shop runs the back office against its own PostgreSQL (`[database] dsn`).

PostgreSQL refuses to run as root: as root, the cluster's folder is given to an unprivileged user (`nobody`
unless said otherwise) and every PostgreSQL program runs as that user through `runuser`. Root itself still
connects through the socket (as the cluster's superuser `postgres`, trusted on the socket, which only the
folder's owner and root can reach).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from office.errors import OfficeError

log = logging.getLogger(__name__)

PORT = 5432  # only names the socket file (.s.PGSQL.5432) in the private folder: no TCP listener


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server's programs (Debian keeps them in /usr/lib/postgresql/VERSION/bin), or None."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class LocalPostgres:
    """One private cluster in `root` (made when missing); `start()`, then `dsn(database)`, then `stop()`."""

    def __init__(self, root: Path | None = None, *, durable: bool = True, user: str = "nobody") -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise OfficeError("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
        self.bin = bindir
        self.root = root or Path(tempfile.mkdtemp(prefix="countertop-pg-"))
        self.data, self.log_file = self.root / "data", self.root / "postgres.log"
        self.durable = durable
        self._as = user if os.geteuid() == 0 else None  # initdb and postgres refuse root

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as is not None:
            cmd = ["runuser", "-u", self._as, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise OfficeError(f"{args[0]} failed ({done.returncode}): {tail}")
        return done

    def start(self) -> LocalPostgres:
        """initdb (the first time), then start the server and wait until it takes connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as is not None:
            owner = pwd.getpwnam(self._as)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        os.chmod(self.root, 0o700)
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"
            )
        if self.running():
            return self
        options = [f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -p {PORT}"]
        if not self.durable:  # tests: nothing here must survive a crash of the machine
            options.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            "120",
            "-o",
            " ".join(options),
            "start",
        )
        log.info("office: PostgreSQL running in %s", self.root)
        return self

    def running(self) -> bool:
        """True when this cluster's server is up (a folder reused after an earlier start)."""
        if not (self.data / "postmaster.pid").exists():
            return False
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except OfficeError:
            return False
        return True

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for a database of this cluster."""
        return f"host={self.root} port={PORT} user=postgres dbname={database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its connection string."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self, remove: bool = True) -> None:
        """Stop the server (fast: open sessions are ended) and, with `remove`, delete the cluster."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            if remove:
                shutil.rmtree(self.root, ignore_errors=True)
