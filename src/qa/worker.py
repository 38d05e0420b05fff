"""The gunicorn worker `qa serve` runs: gunicorn's threaded worker, with two changes.

- What gunicorn refuses before the app sees it (a request line or headers over its limits, malformed HTTP) is
  answered in the API's JSON error shape, naming the limit, instead of gunicorn's HTML page.
- A stopping worker finishes the requests in flight but does not wait for connections that are merely open:
  kept-alive connections get a short grace (STOP_LINGER_SECONDS) instead of 2 s, and a connection that has not
  sent a byte (a browser's preconnect, say) is closed at once instead of holding the stop for up to 5 s; then the
  worker exits without the interpreter's slow clean-up.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers import gthread

from .app import CSP
from .contract import ERROR_STATUS

STOP_LINGER_SECONDS = 0.2  # a request already sent on a kept-alive connection when the stop began is still answered
WAIT_SLICE_SECONDS = 0.1  # how often a thread waiting for a new connection's first bytes checks for a stop

REASONS = {
    400: "Bad Request",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}


def rejection(exc: BaseException, cfg) -> tuple[int, str, str]:
    """(status, code, message) for a request gunicorn could not hand to the app; the status is the code's own
    (`contract.ERROR_STATUS`)."""
    code, message = _rejection(exc, cfg)
    return ERROR_STATUS[code], code, message


def _rejection(exc: BaseException, cfg) -> tuple[str, str]:
    if isinstance(exc, errors.LimitRequestLine):
        return (
            "uri_too_long",
            f"the request line is over the server's limit of {cfg.limit_request_line:,} "
            "bytes; send a long question with POST /api/search as JSON",
        )
    if isinstance(exc, errors.LimitRequestHeaders):
        return (
            "headers_too_large",
            f"the request headers are over the server's limits: at most "
            f"{cfg.limit_request_fields} headers of at most "
            f"{cfg.limit_request_field_size:,} bytes each",
        )
    if isinstance(exc, errors.UnsupportedTransferCoding):
        return "not_implemented", f"unsupported transfer coding: {exc}"
    if isinstance(exc, errors.ParseException) and not isinstance(
        exc, (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName)
    ):
        return "bad_request", f"malformed HTTP request ({type(exc).__name__}: {exc})"
    return "internal_error", "internal error"


def json_error(status: int, code: str, message: str) -> bytes:
    """A complete HTTP response in the API's error shape, with the app's security headers; the connection closes."""
    body = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Content-Security-Policy: {CSP}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Referrer-Policy: same-origin\r\n"
        "X-Frame-Options: DENY\r\n"
        f"X-Request-Id: {uuid.uuid4().hex[:16]}\r\n"  # as on every response; the request's own is unread
        "\r\n"
    )
    return head.encode("latin-1") + body


class Worker(gthread.ThreadWorker):
    def run(self) -> None:
        """Serve until stopped, then leave without the interpreter's clean-up, which takes about half a second with
        the model loaded: a worker's state is read-only (the index, the encoder), so only the logs need flushing."""
        super().run()
        self.log.info("Worker exiting (pid: %s)", self.pid)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)

    def handle_error(self, req, client, addr, exc) -> None:
        status, code, message = rejection(exc, self.cfg)
        if status >= 500:
            self.log.exception("error handling a request: %s", exc)
        else:
            self.log.warning("refused a request from %s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, json_error(status, code, message))
        except Exception:  # the client is gone: nothing to tell it
            self.log.debug("failed to send an error response")

    def handle(self, conn):
        """Wait for a new connection's first bytes in short slices, so that a stop does not wait for a client that
        sends nothing; then gunicorn's own handling."""
        if not conn.initialized and not conn.data_ready:
            deadline = time.monotonic() + gthread.DEFAULT_WORKER_DATA_TIMEOUT
            while not conn.wait_for_data(WAIT_SLICE_SECONDS):
                if not self.alive:  # stopping, and the client has sent nothing: close at once (nothing to drain, so
                    conn.close()  # not gunicorn's graceful close, which waits up to 2 s for the client to close)
                    return False
                if time.monotonic() >= deadline:
                    return gthread._DEFER  # gunicorn's own: hand the silent connection back to the poller
            conn.data_ready = True
        return super().handle(conn)

    def _cap_keepalive(self, deadline: float) -> None:
        """At the stop: kept-alive connections get STOP_LINGER_SECONDS; connections that sent nothing are closed."""
        now = time.monotonic()
        super()._cap_keepalive(min(deadline, now + STOP_LINGER_SECONDS))
        for conn in self.pending_conns:
            conn.timeout = now
        self.murder_pending()
