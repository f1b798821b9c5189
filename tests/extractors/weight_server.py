"""A local weight server for the download tests: files served from memory on 127.0.0.1 in a thread, with HTTP
``Range`` support, every request recorded, and two faults on demand (a connection dropped after N bytes; a server
that ignores ``Range``). Also the generated checkpoints it serves (random weights, the real key layout).

Used by ``tests/extractors/conftest.py`` (the ``weight_server`` fixture) and loaded by path from ``tests/tools``.
"""
from __future__ import annotations

import io
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


class WeightServer(ThreadingHTTPServer):
    """``files``: name -> bytes, served at ``<url>/<name>``; ``requests``: ``(name, Range header or None)`` in
    arrival order; ``drop_after``: name -> N, the next response for that name closes the socket after N body
    bytes (once); ``ignore_range``: answer every request with the whole file (200)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: dict[str, int] = {}
        self.ignore_range = False
        self._thread = threading.Thread(target=self.serve_forever, name="weight-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "WeightServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        """Quiet about the sockets it drops on purpose (the handler's last flush fails on them)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: WeightServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        name = self.path.lstrip("/")
        asked = self.headers.get("Range")
        self.server.requests.append((name, asked))
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404, "no such file")
            return
        start = 0
        if asked and not self.server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        drop = self.server.drop_after.pop(name, None)
        if drop is None:
            self.wfile.write(body[start:])
            return
        self.wfile.write(body[start:start + drop])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
        self.close_connection = True

    def log_message(self, *args) -> None:  # quiet
        pass


def state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def i3d_checkpoint(channels: int, seed: int = 0) -> bytes:
    """A ``rgb_imagenet.pt`` (3 channels) / ``flow_imagenet.pt`` (2) with random weights and the real layout."""
    from clicktal.extractors.i3d import InceptionI3d

    torch.manual_seed(seed + channels)
    return state_bytes(InceptionI3d(channels).state_dict())


def tsn_checkpoint(arch: str, seed: int = 0) -> bytes:
    """torchvision's ``arch`` with random weights, as its ImageNet checkpoint is laid out."""
    from clicktal.extractors.tsn import resnet

    torch.manual_seed(seed)
    return state_bytes(resnet(arch).state_dict())
