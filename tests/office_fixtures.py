"""The back office's test setup: a real PostgreSQL from Debian's packages (installed here when missing, as CI is
root), started once per session in a private folder (initdb as the unprivileged user `nobody`, a Unix socket in
that folder, no TCP port) and stopped at the end; a fresh database per test; the back office itself over TLS with
its own certificate; a TCP link between terminals and back office that a test can cut, restore, or make hold
the back office's answers; and Debian's chromium with its chromedriver for the page test."""

from __future__ import annotations

import dataclasses
import itertools
import os
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

_NAMES = itertools.count(1)


def ensure_debian_packages(programs: dict[str, str]) -> None:
    """Install the Debian package of each missing program (program -> package) with apt-get, as root. A fresh
    machine has neither PostgreSQL's server nor chromium: the test setup brings them, not the developer."""
    missing = [pkg for prog, pkg in programs.items() if not _have(prog)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"needs Debian packages {', '.join(missing)} (apt-get install, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in ("install", "update-then-install"):
        if attempt == "update-then-install":
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False, timeout=600)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=1200,
        )
        if done.returncode == 0:
            return
    pytest.fail(f"apt-get install {' '.join(missing)} failed: {done.stderr[-500:]}")


def _have(program: str) -> bool:
    if program == "initdb":
        from office.localdb import postgres_bindir

        return postgres_bindir() is not None
    return shutil.which(program) is not None


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """One PostgreSQL server for the session (fsync off: nothing in it must outlive the tests)."""
    ensure_debian_packages({"initdb": "postgresql"})
    from office.localdb import LocalPostgres

    server = LocalPostgres(durable=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def office_db(postgres) -> str:
    """A new database with the back office's schema; its connection string."""
    import psycopg

    from office.schema import migrate

    dsn = postgres.create_database(f"office_{os.getpid()}_{next(_NAMES)}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn


@dataclasses.dataclass
class Office:
    """A running back office: where terminals reach it, the certificate they trust, its database."""

    url: str
    port: int
    ca_file: str
    dsn: str
    folder: Path
    server: object

    def register(self, terminal_id: str, shop: str = "") -> str:
        """A terminal's token file (as `countertop office terminal ID --token-file FILE` writes it)."""
        import psycopg

        from office.users import add_terminal

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            token = add_terminal(conn, terminal_id, shop)
        path = self.folder / f"{terminal_id}.token"
        path.write_text(token + "\n", encoding="ascii")
        return str(path)

    def add_user(self, name: str, password: str, role: str = "owner", shop: str = "") -> None:
        import psycopg

        from office.users import add_user

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            add_user(conn, name, password, role, shop)

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, args)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def office(office_db, tmp_path) -> Iterator[Office]:
    """The back office on loopback over TLS (a self-signed certificate for 127.0.0.1 and localhost)."""
    from office.config import OfficeSettings, ServerConfig
    from office.tlscert import self_signed
    from office.web import BackgroundOffice

    folder = tmp_path / "office"
    folder.mkdir()
    cert, key, _ = self_signed(["127.0.0.1", "localhost"])
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    settings = OfficeSettings(
        "test", office_db, ServerConfig("127.0.0.1", 0, str(folder / "cert.pem"), str(folder / "key.pem"))
    )
    server = BackgroundOffice(settings).start()
    try:
        yield Office(
            f"https://127.0.0.1:{server.port}", server.port, str(folder / "cert.pem"), office_db, folder, server
        )
    finally:
        server.stop()


class Link:
    """A TCP relay on loopback between terminals and the back office (TLS passes through it untouched).
    `cut()` drops every connection and refuses new ones until `restore()`; `hold()` keeps the back office's answers
    from the terminals (what it received it still stores) until `release()`."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._up, self._holding, self._closed = True, threading.Event(), False
        self._released = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._accept, name="office-link", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = (client, upstream)
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        with self._lock:  # held: wait for release(), or for cut() to drop this connection
                            self._released.wait_for(lambda: not self._holding.is_set() or pair not in self._pairs)
                            if pair not in self._pairs:
                                return
                        client.sendall(data)
                    else:
                        upstream.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            pairs, self._pairs = self._pairs, []
            self._released.notify_all()
        for client, upstream in pairs:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def hold(self) -> None:
        self._holding.set()

    def release(self) -> None:
        with self._lock:
            self._holding.clear()
            self._released.notify_all()

    def close(self) -> None:
        self._closed = True
        self.release()
        self.cut()
        self._listener.close()
        self._thread.join(5)


@pytest.fixture
def link(office) -> Iterator[Link]:
    relay = Link(office.port)
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Debian's chromium and its chromedriver (installed here when missing): (browser, driver) paths."""
    ensure_debian_packages({"chromium": "chromium", "chromedriver": "chromium-driver"})
    return shutil.which("chromium") or "", shutil.which("chromedriver") or ""
