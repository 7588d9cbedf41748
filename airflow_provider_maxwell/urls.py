"""What a URL in a connection is, judged without a resolver: its parts, whether it names this machine,
whether what is sent to it crosses a network in clear, and how an error message may show it."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from airflow_provider_maxwell.exceptions import shown


def url_parts(url: str) -> SplitResult | None:
    """The parts of a URL, or None for what no request can be sent to: unparseable (an unclosed '[' of an
    IPv6 address), or holding whitespace or control characters (which urlsplit silently drops)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return None
    try:
        return urlsplit(url)
    except ValueError:
        return None


def is_this_machine(hostname: str) -> bool:
    """Whether a URL's host name is this machine by its name alone, with no resolver asked: localhost,
    127.0.0.0/8 or ::1. Traffic to it never leaves the machine."""
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:  # a name (a resolver could map it anywhere), or no address at all
        return False


def crosses_network_in_clear(url: str) -> bool:
    """Whether what is sent to `url` crosses a network unencrypted: plain http:// to another machine."""
    parts = url_parts(url)
    return parts is not None and parts.scheme.lower() == "http" and not is_this_machine(parts.hostname or "")


def quotable(url: str) -> str:
    """A URL as an error message may show it: not at all when it could hold credentials or a token."""
    return shown(url) if not any(c in url for c in "@?#") else "(not shown: it may hold credentials)"
