"""Makes every name under .localhost resolve to 127.0.0.1, inside this process only.

Each key vault is its own host, https://{vault}.vault.localhost:PORT/. RFC 6761 reserves
.localhost for the loopback address, and curl and systemd-resolved answer such names
themselves, but plain glibc does not (a Debian container has /etc/hosts with "localhost"
only and nsswitch "files dns"), so the SDK's connection would fail with a name-resolution
error. The SDKs are used with default client options, so instead of an option this wraps
socket.getaddrinfo, which urllib3 (under azure-core's requests transport) calls for every
new connection. TLS still sees the real host name (SNI and certificate check are unchanged);
only the address lookup is answered here. Every other name goes to the original function.
"""
import socket

_original_getaddrinfo = socket.getaddrinfo


def is_localhost_name(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 (socket's names)
    if is_localhost_name(host):
        # keyfoundryd listens on 127.0.0.1 in the tests: answer IPv4 loopback whatever family
        # was asked for, as the server has no IPv6 socket.
        return _original_getaddrinfo("127.0.0.1", port, socket.AF_INET, type, proto, flags)
    return _original_getaddrinfo(host, port, family, type, proto, flags)


def install() -> None:
    """Installs the wrapper (idempotent)."""
    socket.getaddrinfo = _getaddrinfo
