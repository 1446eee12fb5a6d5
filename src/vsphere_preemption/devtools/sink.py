"""A tiny CloudEvents sink on loopback: what K_SINK points at in the demo and in the tests.

A real HTTP server (standard library, one thread per request) that keeps every request as
received, parses it with the CloudEvents SDK, binary or structured, records the event and
acknowledges it with 202; anything that is not a CloudEvent gets a 400 with the reason.
`statuses` script the first answers (e.g. a 503, to make the sender retry). The demo waits on
it for the worker's VmPreemptedEvent; the tests read what the worker sent, to the byte.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from vsphere_preemption.domain.text import one_line

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class ReceivedEvent:
    attributes: dict[str, Any]  # as the SDK parsed them (`time` a datetime)
    data: Any  # parsed JSON when the content type is JSON, else bytes/str
    mode: str  # "binary" | "structured"

    @property
    def id(self) -> str:
        return str(self.attributes.get("id", ""))

    @property
    def type(self) -> str:
        return str(self.attributes.get("type", ""))

    @property
    def source(self) -> str:
        return str(self.attributes.get("source", ""))

    @property
    def datacontenttype(self) -> str:
        return str(self.attributes.get("datacontenttype", ""))


class EventSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, statuses: Sequence[int] = ()):
        self._statuses = list(statuses)  # answered in order to CloudEvents, then 202
        self._received: list[HTTPMessage] = []
        self._events: list[ReceivedEvent] = []
        self._rejected: list[str] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def events(self) -> list[ReceivedEvent]:
        with self._changed:
            return list(self._events)

    @property
    def received(self) -> list[HTTPMessage]:
        """Every POST as it arrived (headers as sent, body bytes), CloudEvent or not."""
        with self._changed:
            return list(self._received)

    @property
    def rejected(self) -> list[str]:
        """Why requests that were not CloudEvents were refused."""
        with self._changed:
            return list(self._rejected)

    def wait_for(self, event_type: str, timeout: float) -> ReceivedEvent | None:
        """The first event of that type, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((e for e in self._events if e.type == event_type), None)
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def start(self) -> EventSink:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="event-sink", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> EventSink:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, raw: HTTPMessage) -> tuple[int, dict[str, str]]:
        """Keep and parse one request; the status and body to answer it with."""
        with self._changed:
            self._received.append(raw)
        reason = self._parse({k.lower(): v for k, v in raw.headers.items()}, raw.body)
        if reason is not None:
            return 400, {"error": f"not a CloudEvent: {reason}"}
        with self._changed:
            status = self._statuses.pop(0) if self._statuses else 202
        return status, {"status": "accepted" if status < 300 else "refused"}

    def _parse(self, headers: dict[str, str], body: bytes) -> str | None:
        """Parse and keep one event; None if it is a CloudEvent, else why not."""
        try:
            event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
        except Exception as exc:  # noqa: BLE001 (whatever the SDK raises, the input was bad)
            reason = one_line(exc, 200)
            with self._changed:
                self._rejected.append(reason)
            return reason
        mode = "binary" if "ce-specversion" in headers else "structured"
        data = event.get_data()
        if isinstance(data, bytes | str) and "json" in (event.get_datacontenttype() or ""):
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        with self._changed:
            self._events.append(ReceivedEvent(dict(event.get_attributes()), data, mode))
            self._changed.notify_all()
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "event too large"})
                    return
                body = self.rfile.read(length)
                self._answer(*sink._record(HTTPMessage(dict(self.headers.items()), body)))

            def _answer(self, status: int, body: dict[str, str]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo prints what arrived itself; tests read `received`

        return Handler
