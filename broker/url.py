"""Broker URLs: ``mqtt://[user:pass@]host:port``, ``mqtts://…`` for TLS, ``embedded`` and ``local``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from twin.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where an external MQTT broker is and how to log in."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def display(self) -> str:
        """URL without the password (the user name quoted as in the URL it was parsed from)."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://…``.

    Raises:
        ConfigError: naming what is wrong with the URL.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # unbalanced IPv6 brackets, a netloc that changes under NFKC …
        raise ConfigError(f"--broker {url!r}: not a URL ({exc})") from exc
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(
            f"--broker {url!r}: expected mqtt://[user:pass@]host:port or mqtts://… (or 'embedded')"
        )
    if not parts.hostname:
        raise ConfigError(f"--broker {url!r}: no host given")
    if any(not c.isprintable() or c.isspace() for c in parts.hostname):
        raise ConfigError(f"--broker {url!r}: the host name has a space or a control character")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--broker {url!r}: invalid port (expected 1…65535)") from exc
    if port == 0:
        raise ConfigError(f"--broker {url!r}: invalid port (expected 1…65535)")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
