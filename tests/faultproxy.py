"""A fault-injecting HTTP proxy on loopback, in front of the S3 endpoint.

It forwards every request to the upstream server, except a configured share that it answers with a
5xx or stalls on (sleeps past the client's read timeout, then drops the connection). Faults can be
limited to requests that match a predicate (a method and a path prefix, say).
"""

import http.client
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


@dataclass
class Faults:
    error_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 5.0
    statuses: tuple = (500, 503)
    match: object = None  # callable(method, path) -> bool; None matches every request
    seed: int = 7
    counts: dict = field(default_factory=lambda: {"requests": 0, "errors": 0, "stalls": 0})


class FaultProxy:
    def __init__(self, upstream: str):
        target = urlparse(upstream)
        self.upstream_host, self.upstream_port = target.hostname, target.port
        self.faults = Faults()
        self.lock = threading.Lock()
        self.random = random.Random(self.faults.seed)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._decide(self.command, self.path)
                if fault == "stall":
                    time.sleep(proxy.faults.stall_seconds)
                    self.close_connection = True
                    return
                if fault is not None:
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
                               f'{"ServiceUnavailable" if fault == 503 else "InternalError"}</Code>'
                               f"<Message>injected</Message></Error>").encode()
                    self.send_response(fault)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection.request(self.command, self.path, body=body, headers=headers)
                upstream = connection.getresponse()
                data = upstream.read()
                self.send_response(upstream.status, upstream.reason)
                for key, value in upstream.getheaders():
                    if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", upstream.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def configure(self, **options) -> None:
        with self.lock:
            self.faults = Faults(**options)
            self.random = random.Random(self.faults.seed)

    def _decide(self, method: str, path: str):
        with self.lock:
            faults = self.faults
            faults.counts["requests"] += 1
            if faults.match is not None and not faults.match(method, path):
                return None
            roll = self.random.random()
            if roll < faults.error_rate:
                faults.counts["errors"] += 1
                return self.random.choice(faults.statuses)
            if roll < faults.error_rate + faults.stall_rate:
                faults.counts["stalls"] += 1
                return "stall"
            return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
