"""moto's S3 server with a byte counter at the server side.

The same WSGI application and request handler as `moto_server`, wrapped in a middleware that
records, per request, the method, path, status and the bytes of the response body it sent. The
benchmark reads and clears the record over HTTP (never through the S3 API, so it is not counted):

    GET  /__bench__/requests   -> [[method, path, status, bytes, range header], ...]
    POST /__bench__/reset
    POST /__bench__/delay?ms=N  every S3 request waits N ms before it is answered (first-byte
                                latency of a remote endpoint; 0 by default)

No proxy sits between the service and this server: the counting costs a few microseconds per
request inside the server process.

    python -m bench.s3server PORT
"""
from __future__ import annotations

import json
import sys
import threading
import time
from urllib.parse import parse_qs, unquote

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[list] = []
        self.delay = 0.0

    def add(self, item: list) -> None:
        with self.lock:
            self.items.append(item)

    def take(self, reset: bool = False) -> list[list]:
        with self.lock:
            items = list(self.items)
            if reset:
                self.items.clear()
            return items


def counting(app, record: Record):
    def wrapped(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__bench__/delay"):
            record.delay = float(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0]) / 1000.0
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"{}"]
        if path.startswith("/__bench__/"):
            items = record.take(reset=path.endswith("/reset"))
            body = json.dumps(items if path.endswith("/requests") else {"cleared": len(items)}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        method = environ.get("REQUEST_METHOD", "")
        status = {}
        if record.delay:
            time.sleep(record.delay)

        def start(status_line, headers, exc_info=None):
            status["code"] = int(status_line.split()[0])
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        result = app(environ, start)

        def body():
            sent = 0
            try:
                for chunk in result:
                    sent += len(chunk)
                    yield chunk
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                if method == "HEAD":
                    sent = 0
                record.add([method, unquote(path), status.get("code", 0), sent, environ.get("HTTP_RANGE", "")])

        return body()

    return wrapped


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, counting(app, Record()), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
