"""Timeouts and retries for alpaca-py clients.

The SDK sets no HTTP timeout (a hung server blocks forever) and retries only 429/504, three
seconds apart. The project owns that policy instead: every request gets a timeout, and
429, 5xx, connection errors and timeouts are retried a bounded number of times with
exponential backoff (honouring Retry-After). After the last attempt the SDK sees the final
response and raises its APIError, or the connection error surfaces.
"""

from __future__ import annotations

import json
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRIED_STATUSES = (429, 500, 502, 503, 504)


CHUNK = 64 * 1024


class ResponseError(RuntimeError):
    """The server answered, but not with something usable: too slowly, or not JSON. Never retried as a
    silent server, and never reported as one. The message names the URL (keys travel in headers, never in it)."""


class DeadlineExceeded(ResponseError):
    pass


class NotJson(ResponseError):
    pass


def shown_url(url: str, limit: int = 160) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


class _TimeoutAdapter(HTTPAdapter):
    """Requests' timeout bounds each read; this adds a total deadline per request (a server trickling a byte
    a second never trips a per-read timeout) and an optional one for every request of a run, and refuses a
    successful answer whose body is not JSON."""

    def __init__(self, timeout_s: float, retry: Retry, request_deadline_s: float | None, run_deadline_s: float | None):
        self._timeout_s = timeout_s
        self._request_deadline_s = request_deadline_s
        self._run_deadline_s = run_deadline_s  # from the session's creation: one session serves one run of a source
        self._created = time.monotonic()
        super().__init__(max_retries=retry)

    def _deadline(self, started: float) -> tuple[float, str]:
        limits = []
        if self._request_deadline_s is not None:
            limits.append((started + self._request_deadline_s, f"the total deadline of {self._request_deadline_s:g} s per request"))
        if self._run_deadline_s is not None:
            limits.append((self._created + self._run_deadline_s, f"the total deadline of {self._run_deadline_s:g} s per run"))
        return min(limits, default=(float("inf"), ""))

    def send(self, request, **kwargs):
        kwargs["timeout"] = kwargs.get("timeout") or self._timeout_s
        stream = kwargs.pop("stream", False)
        started = time.monotonic()
        deadline, what = self._deadline(started)
        if started >= deadline:
            raise DeadlineExceeded(f"{shown_url(request.url)} not requested: {what} has passed")
        response = super().send(request, stream=True, **kwargs)
        if stream:
            return response
        body = bytearray()
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            body += chunk
            if time.monotonic() > deadline:
                response.close()
                raise DeadlineExceeded(
                    f"{shown_url(request.url)} exceeded {what}: {len(body)} bytes in {time.monotonic() - started:.1f} s, "
                    "the answer still incomplete"
                )
        response._content, response._content_consumed = bytes(body), True
        if 200 <= response.status_code < 300 and body.strip():
            try:
                json.loads(body)
            except ValueError as error:
                kind = response.headers.get("Content-Type", "no Content-Type")
                raise NotJson(
                    f"{shown_url(request.url)} answered HTTP {response.status_code} with a body that is not JSON "
                    f"({kind}, {len(body)} bytes, starting {bytes(body[:40])!r}): {error}"
                ) from None
        return response


def retrying_session(
    timeout_s: float, max_retries: int, backoff_s: float, request_deadline_s: float | None = None,
    run_deadline_s: float | None = None,
) -> requests.Session:
    retry = Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        backoff_factor=backoff_s,
        status_forcelist=RETRIED_STATUSES,
        allowed_methods=None,  # orders are safe to retry: each carries a deterministic client_order_id
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = _TimeoutAdapter(timeout_s, retry, request_deadline_s, run_deadline_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def harden(
    client, timeout_s: float, max_retries: int, backoff_s: float, request_deadline_s: float | None = None,
    run_deadline_s: float | None = None,
):
    """Give an alpaca-py REST client our timeouts, deadlines and retry policy in place of its own."""
    # alpaca-py exposes no hook for this; `_session` and `_retry` are its RESTClient's attributes.
    client._session = retrying_session(timeout_s, max_retries, backoff_s, request_deadline_s, run_deadline_s)
    client._retry = 0
    return client
