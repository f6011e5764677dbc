"""Which broker URLs may be traded without the explicit live-money switch.

The decision is an allow-list on the normalised host, never a comparison with the live
host: `https://API.alpaca.markets.:443` is the live API to DNS and TLS however it is
spelt, and so is any IP literal or host we do not know. A URL is accepted without
TURBOMODE_ALLOW_LIVE_TRADING=1 only when its host is one of Alpaca's paper hosts or a
loopback address (the test emulator). A URL with userinfo, a backslash or whitespace is
refused outright: HTTP libraries disagree on where such a URL's host is.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

PAPER_HOSTS = ("paper-api.alpaca.markets",)
LOOPBACK_NAMES = ("localhost",)
LIVE_HOSTS = ("api.alpaca.markets",)


class UnsafeTradingUrl(ValueError):
    """The URL is not a paper host and live trading was not explicitly allowed, or it cannot be read safely."""


def normalised_host(url: str) -> str:
    """The host `url` connects to: lower case, no trailing dot, no port, no userinfo, IPv6 without brackets."""
    if re.search(r"[\s\\]", url) or "@" in urlsplit(url).netloc:
        raise UnsafeTradingUrl("it holds userinfo, a backslash or whitespace, so its host is ambiguous")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTradingUrl("expected an http(s) URL with a host")
    return parts.hostname.lower().rstrip(".")


def is_paper_host(host: str) -> bool:
    if host in PAPER_HOSTS or host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redacted(url: str) -> str:
    """`url` without userinfo, query or fragment: safe to put in a message."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def check_trading_url(url: str, allow_live: bool, variable: str = "APCA_API_BASE_URL") -> bool:
    """Whether `url` is a paper endpoint; raises UnsafeTradingUrl, naming `variable`, when it may trade real money
    and `allow_live` is False. With `allow_live`, any well-formed URL is accepted (and reported as not paper)."""
    shown = redacted(url)
    try:
        host = normalised_host(url)
    except UnsafeTradingUrl as error:
        raise UnsafeTradingUrl(f"{variable}={shown!r} is refused: {error}") from None
    if is_paper_host(host):
        return True
    if allow_live:
        return False
    what = "Alpaca's live-money API" if host in LIVE_HOSTS else "not one of Alpaca's paper hosts nor loopback"
    raise UnsafeTradingUrl(
        f"{variable}={shown!r} is refused: its host {host} is {what}, and this pipeline paper-trades. "
        f"Point {variable} at https://{PAPER_HOSTS[0]}, or set TURBOMODE_ALLOW_LIVE_TRADING=1 to trade real money."
    )
