"""Signed client callbacks: the signature, the SSRF guard, and one HTTP attempt.

No ORM here: ``resourced.callbacks.delivery`` records attempts and decides retries. This module
knows HTTP.

Signature (docs/api.md §3): ``X-Resourced-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<delivery id>.<body>">`` with the callback secret, where ``X-Resourced-Delivery`` carries the
delivery id. The id is signed so that a captured delivery cannot be replayed under a fresh id past
a receiver's duplicate check.

SSRF guard: the callback host is resolved here, every address is checked, and the connection is
made to an address that was checked (so a DNS answer that changes between the check and the
connection cannot point us elsewhere). Loopback, private, link-local, multicast, reserved,
unspecified and other non-global addresses are refused unless ``allow_private``. Redirects are
never followed: a 3xx is a failed attempt.
"""

import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

SIGNATURE_HEADER = "X-Resourced-Signature"
DELIVERY_HEADER = "X-Resourced-Delivery"
ATTEMPT_HEADER = "X-Resourced-Attempt"
USER_AGENT = "resourced-callback/1"
MAX_ANSWER_BYTES = 64 * 1024
NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- Signature --------------------------------------------------------------------------------


class SignatureError(Exception):
    """The signature header is missing, malformed, stale, or does not match the body."""


def signature(body: bytes, *, delivery_id: str, secret: str, timestamp: int) -> str:
    """The value of X-Resourced-Signature for `body`, delivered as `delivery_id`, signed at `timestamp`."""
    signed = f"{timestamp}.{delivery_id}.".encode() + body
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(body: bytes, header: str | None, *, delivery_id: str, secret: str, tolerance: int,
                     now: float | None = None) -> int:
    """Check `header` against `body` and `delivery_id` (the X-Resourced-Delivery header); the
    signing time, or SignatureError saying what is wrong.

    Several ``v1=`` values are allowed (a sender rotating its secret); one must match.
    """
    if not header:
        raise SignatureError(f"{SIGNATURE_HEADER}: missing")
    timestamp = None
    candidates = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"{SIGNATURE_HEADER}: t is not a unix time") from None
        elif name == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER}: expected t=<unix seconds>,v1=<hex HMAC-SHA256>")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"{SIGNATURE_HEADER}: signed {int(now - timestamp)} s ago, outside the {tolerance} s window")
    signed = signature(body, delivery_id=delivery_id, secret=secret, timestamp=timestamp)
    expected = signed.partition("v1=")[2]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError(f"{SIGNATURE_HEADER}: does not match the body and the delivery id")
    return timestamp


# --- The URL a client gives ----------------------------------------------------------------------

MAX_URL_LENGTH = 2048


def url_problem(value: str) -> str | None:
    """Why `value` cannot be a callback URL (said to the client at submit), or None. Where it
    points is checked at each delivery (the SSRF guard): a name's addresses change."""
    from django.core.exceptions import ValidationError
    from django.core.validators import URLValidator

    if len(value) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        return "must be an http:// or https:// URL"
    return None


# --- SSRF guard -------------------------------------------------------------------------------


class CallbackRefused(Exception):
    """The callback URL points at an address the service does not call."""


def _embedded_ipv4(ip: ipaddress._BaseAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip.teredo:
            return ip.teredo[1]
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(address: str) -> str | None:
    """Why `address` may not be called ('loopback', 'private', …), or None for a global address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    for candidate in (_embedded_ipv4(ip), ip):  # the IPv4 inside names the problem best
        if candidate is None:
            continue
        for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
            if getattr(candidate, f"is_{kind}"):
                return kind.replace("_", "-")
        if not candidate.is_global:
            return "non-global"
    return None


def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address `host` resolves to, each checked; CallbackRefused when one is not global.

    One bad address refuses the whole host: an attacker controlling DNS could otherwise mix a
    public address with an internal one. socket.gaierror (no such host) propagates.
    """
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                shown = host if host == address else f"{host} resolves to {address}, which"
                raise CallbackRefused(f"callback_url: {shown} is a {problem} address; not called")
    return addresses


# --- One attempt ------------------------------------------------------------------------------


@dataclass
class AttemptResult:
    outcome: str  # one of CallbackDelivery.Outcome's values
    http_status: int | None = None
    answer: str = ""
    address: str = ""
    error: str = ""
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


def _answer_ok(status: int, raw: bytes) -> tuple[bool, str]:
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False, "the answer is not JSON"
    if not isinstance(answer, dict) or "code" not in answer:
        return False, 'the answer has no "code"'
    if answer["code"] not in (0, "0") or isinstance(answer["code"], bool):
        return False, f'the answer\'s code is {answer["code"]!r}, not 0'
    return True, ""


def post_signed(
    url: str,
    body: bytes,
    *,
    delivery_id: str,
    attempt: int,
    secret: str,
    timeout: float,
    allow_private: bool,
    excerpt_chars: int = 1000,
    ca_file: str = "",
) -> AttemptResult:
    """POST `body` to `url` once, signed; never raises for network or HTTP problems.

    HTTPS certificates are checked against `ca_file` (default: certifi's bundle) for the host
    name of the URL, although the connection goes to the checked IP address.
    """
    started = time.monotonic()

    def result(outcome: str, **fields) -> AttemptResult:
        return AttemptResult(outcome, duration_ms=int((time.monotonic() - started) * 1000), **fields)

    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("http", "https") or not host:
        return result("refused", error="callback_url: not an http(s) URL with a host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return result("refused", error="callback_url: bad port")
    try:
        addresses = resolve_checked(host, port, allow_private=allow_private)
    except CallbackRefused as exc:
        return result("refused", error=str(exc))
    except (socket.gaierror, UnicodeError) as exc:
        return result("connection_error", error=f"cannot resolve {host}: {exc}")

    timestamp = int(time.time())
    headers = {
        "Host": parts.netloc.rpartition("@")[2],
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
        SIGNATURE_HEADER: signature(body, delivery_id=delivery_id, secret=secret, timestamp=timestamp),
    }
    if parts.username:
        userinfo = urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(parts.password or "")
        headers.update(urllib3.make_headers(basic_auth=userinfo))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = started + timeout

    last_error = ""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return result("timeout", address=address, error=f"no answer within {timeout:g} s")
        pool_timeout = urllib3.Timeout(connect=remaining, read=remaining)
        if scheme == "https":
            context = ssl.create_default_context(cafile=ca_file or certifi.where())
            pool = urllib3.HTTPSConnectionPool(
                address, port, timeout=pool_timeout, retries=False, maxsize=1,
                ssl_context=context, server_hostname=host, assert_hostname=host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=pool_timeout, retries=False, maxsize=1)
        try:
            response = pool.urlopen(
                "POST", target, body=body, headers=headers, redirect=False, retries=False,
                assert_same_host=False, preload_content=False,
            )
            try:
                raw = response.read(MAX_ANSWER_BYTES)
            finally:
                response.release_conn()
        except (NewConnectionError, ConnectTimeoutError) as exc:
            last_error = f"{address}: cannot connect ({type(exc).__name__})"
            continue  # the next checked address, if any
        except ReadTimeoutError:
            return result("timeout", address=address, error=f"no answer within {timeout:g} s")
        except (HTTPError, OSError) as exc:
            return result("connection_error", address=address, error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            pool.close()

        status = response.status
        excerpt = raw.decode("utf-8", "replace")[:excerpt_chars]
        if 200 <= status < 300:
            ok, why = _answer_ok(status, raw)
            if ok:
                return result("delivered", http_status=status, answer=excerpt, address=address)
            return result("rejected", http_status=status, answer=excerpt, address=address, error=why)
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            why = f"HTTP {status} redirect to {location[:200]!r} not followed"
        else:
            why = f"HTTP {status}"
        return result("http_error", http_status=status, answer=excerpt, address=address, error=why)
    return result("connection_error", error=last_error or "no address to connect to")
