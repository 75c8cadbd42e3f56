"""A TCP proxy on loopback that cuts, delays or swallows traffic: real network faults.

- :meth:`Proxy.cut` resets every open connection (and with ``refuse``, new ones at once);
- ``delay`` holds each chunk that many seconds before forwarding it (a slow network);
- ``blackhole`` accepts connections and data and forwards nothing (packets dropped on the way:
  the client waits for its socket timeout);
- ``sent`` counts chunks forwarded from clients to the server: with one command a chunk (no
  pipelining), the number of commands that reached the server, a measure of retry attempts.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class Proxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` drops all connections (and refuses new ones)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.refusing = False
        self.delay = 0.0
        self.blackhole = False
        self.sent = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=1)
            except OSError:  # the server is down: so is the connection through the proxy
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Forward between the client ``a`` and the server ``b`` until either side closes."""
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.blackhole:
                        continue
                    if self.delay:
                        time.sleep(self.delay)
                    if sock is a:
                        with self._lock:
                            self.sent += 1
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket cut() already closed
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self, refuse: bool = True) -> None:
        """Close every open connection at once; with ``refuse``, new ones are closed on arrival."""
        self.refusing = refuse
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def heal(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()
