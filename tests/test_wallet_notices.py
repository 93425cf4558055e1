"""Back-office WeChat Pay notices (firmware/wallets/notices.py): a back office that never finishes its answer
holds one thread of the notices' own, never the worker threads the provider calls share, and is not asked
again while it hangs."""

from __future__ import annotations

import asyncio
import socket
import threading

from firmware.config import OfficeConfig
from firmware.wallets.notices import OfficeNotices


def test_a_back_office_that_never_finishes_its_answer_holds_no_shared_thread_and_is_asked_once(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret", encoding="ascii")
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    release = threading.Event()

    def serve() -> None:
        while not release.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\n")  # then nothing more: the answer trickles, or never ends
            accepted.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    office = OfficeConfig(url=f"http://127.0.0.1:{port}", token_file=str(token), timeout=120.0)
    notices = OfficeNotices(office, "1900000109")

    def hanging() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "office-notice" and t.is_alive()]

    async def run() -> list[str]:
        await notices.wait("T1", 880, 0.1)  # asks the back office, which hangs: a plain sleep's length
        await notices.wait("T1", 880, 0.1)  # the first request still hangs: not asked again
        return [t.name for t in threading.enumerate() if t.name.startswith("asyncio")]

    try:
        shared = asyncio.run(run())
        assert shared == []  # the provider calls' worker threads (asyncio.to_thread) were never taken
        assert len(hanging()) == 1 and hanging()[0].daemon  # one request, in a thread of its own
    finally:
        release.set()
        server.close()
        for conn in accepted:
            conn.close()
