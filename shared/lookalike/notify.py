"""Telling clients a job is done: signed webhooks (with an SSRF guard) and e-mail over SMTP.

Webhook request::

    POST <webhook_url>
    Content-Type: application/json
    Lookalike-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
    Lookalike-Delivery: <delivery_id>

    {"event": "job.succeeded", "delivery_id": "...", "created_at": "...", "job": {...}}

The body and delivery_id are fixed when the delivery is created; retries resend the same
bytes with a fresh timestamp. Receivers verify with :func:`verify_signature` and drop
repeated delivery ids.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from urllib.parse import urlsplit

from lookalike.config import Settings
from lookalike.errors import LookalikeError

SIGNATURE_HEADER = "Lookalike-Signature"
DELIVERY_HEADER = "Lookalike-Delivery"


class InvalidOption(LookalikeError):
    """A job option (e-mail, top-k, clips, ...) is not acceptable."""

    code = "invalid_option"
    http_status = 422


class WebhookRefused(InvalidOption):
    """The webhook URL is not acceptable (scheme, or it resolves to a private address)."""

    code = "invalid_webhook"
    http_status = 422


# --- signatures -----------------------------------------------------------------------------

def sign_payload(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: int = 300,
                     now: float | None = None) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


# --- SSRF guard -----------------------------------------------------------------------------

def _allowed_by_list(host: str, addresses: list[ipaddress._BaseAddress], allow: list[str]) -> bool:
    for item in allow:
        if item.lower() == host.lower():
            return True
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        if addresses and all(a in net for a in addresses):
            return True
    return False


def _is_public(addr: ipaddress._BaseAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified or not addr.is_global)


def check_webhook_url(url: str, allow: list[str], *, resolve: bool = True) -> str:
    """Refuse URLs that are not http(s) or that reach loopback, private or link-local hosts.

    Hosts, IPs or CIDRs named in ``allow`` (LOOKALIKE_WEBHOOK_ALLOW) pass. Returns the URL.
    """
    if len(url) > 2000:
        raise WebhookRefused("The webhook URL is too long (2000 characters at most).")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise WebhookRefused("The webhook URL must not contain spaces or control characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("The webhook URL must be an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise WebhookRefused("The webhook URL must not carry a user name or password.")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("The webhook URL has an invalid port.") from None
    addresses: list[ipaddress._BaseAddress] = []
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if resolve:
            try:
                infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            except (socket.gaierror, UnicodeError):
                raise WebhookRefused(f"The webhook host {host!r} does not resolve.") from None
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if _allowed_by_list(host, addresses, allow):
        return url
    bad = [a for a in addresses if not _is_public(a)]
    if bad:
        raise WebhookRefused(
            f"The webhook host {host!r} resolves to a non-public address ({bad[0]}); "
            "webhooks may only reach public hosts unless LOOKALIKE_WEBHOOK_ALLOW names it.")
    return url


# --- sending --------------------------------------------------------------------------------

def post_webhook(url: str, body: bytes, secret: str, delivery_id: str, *, timeout_s: float,
                 allow: list[str]) -> tuple[bool, str | None, bool]:
    """Send once. Returns (delivered, error text, worth retrying)."""
    import httpx

    try:
        check_webhook_url(url, allow)
    except WebhookRefused as exc:
        return False, exc.message, False
    headers = {"Content-Type": "application/json", "User-Agent": "lookalike-webhook/1",
               SIGNATURE_HEADER: sign_payload(secret, body), DELIVERY_HEADER: delivery_id}
    try:
        # Redirects are not followed: they could lead to a private address.
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}", True
    if 200 <= response.status_code < 300:
        return True, None, False
    return False, f"HTTP {response.status_code}", True


def send_email(settings: Settings, to: str, subject: str, text: str) -> None:
    """One plain-text message through the configured SMTP server (raises OSError/SMTPException)."""
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    host, port = settings.smtp_host, settings.smtp_port
    timeout = settings.webhook_timeout_s
    if settings.smtp_tls == "ssl":
        server: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout,
                                                context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(host, port, timeout=timeout)
    with server:
        if settings.smtp_tls == "starttls":
            server.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            server.login(settings.smtp_user, password)
        server.send_message(msg)


def retry_delay(attempt: int, first_s: float, max_s: float) -> float:
    """Seconds before try ``attempt + 1`` (attempt counts from 1): first, 2x, 4x, … capped."""
    return min(max_s, first_s * (2 ** max(0, attempt - 1)))


EMAIL_ADDRESS_MAX = 254


def check_email(address: str) -> str:
    address = address.strip()
    local, _, domain = address.rpartition("@")
    if (not local or not domain or "." not in domain or len(address) > EMAIL_ADDRESS_MAX
            or any(c in address for c in " \r\n<>,;\"")):
        raise InvalidOption("The e-mail address is not valid.")
    return address
