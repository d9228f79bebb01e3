"""Broker URLs: ``mqtt://[user:pass@]host:port``, ``mqtts://…`` for TLS, ``embedded`` and ``local``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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
        """URL without the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://…``.

    Raises:
        ConfigError: naming what is wrong with the URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(
            f"--broker {url!r}: expected mqtt://[user:pass@]host:port or mqtts://… (or 'embedded')"
        )
    if not parts.hostname:
        raise ConfigError(f"--broker {url!r}: no host given")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--broker {url!r}: invalid port") from exc
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
