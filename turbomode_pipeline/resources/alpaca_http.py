"""Timeouts and retries for alpaca-py clients.

The SDK sets no HTTP timeout (a hung server blocks forever) and retries only 429/504, three
seconds apart. The project owns that policy instead: every request gets a timeout, and
429, 5xx, connection errors and timeouts are retried a bounded number of times with
exponential backoff (honouring Retry-After). After the last attempt the SDK sees the final
response and raises its APIError, or the connection error surfaces.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRIED_STATUSES = (429, 500, 502, 503, 504)


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout_s: float, retry: Retry):
        self._timeout_s = timeout_s
        super().__init__(max_retries=retry)

    def send(self, request, **kwargs):
        kwargs["timeout"] = kwargs.get("timeout") or self._timeout_s
        return super().send(request, **kwargs)


def retrying_session(timeout_s: float, max_retries: int, backoff_s: float) -> requests.Session:
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
    adapter = _TimeoutAdapter(timeout_s, retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def harden(client, timeout_s: float, max_retries: int, backoff_s: float):
    """Give an alpaca-py REST client our timeout and retry policy in place of its own."""
    # alpaca-py exposes no hook for this; `_session` and `_retry` are its RESTClient's attributes.
    client._session = retrying_session(timeout_s, max_retries, backoff_s)
    client._retry = 0
    return client
