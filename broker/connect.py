"""Open the bus a run asked for: the embedded broker (default), an external broker, or in-process."""

from __future__ import annotations

from dataclasses import dataclass

from broker.bus import Bus, LocalBus
from broker.embedded import EmbeddedBroker
from broker.mqtt_bus import MqttBus
from broker.url import parse_broker_url


@dataclass(slots=True)
class BusHandle:
    """A connected bus and, for ``embedded``, the broker it owns."""

    bus: Bus
    embedded: EmbeddedBroker | None = None

    def close(self) -> None:
        """Close the client, then stop the embedded broker if this handle started one."""
        try:
            self.bus.close()
        finally:
            if self.embedded is not None:
                self.embedded.stop()
                self.embedded = None


def open_bus(
    broker: str = "embedded",
    *,
    will: tuple[str, bytes] | None = None,
    connect_timeout_s: float = 10.0,
    reconnect_timeout_s: float = 30.0,
) -> BusHandle:
    """Connect to ``broker``: ``embedded``, ``local`` (no MQTT at all) or ``mqtt[s]://…``.

    Raises:
        ConfigError: the URL is malformed.
        BrokerUnreachableError: nothing accepted the connection within ``connect_timeout_s``.
    """
    if broker == "local":
        return BusHandle(LocalBus())
    if broker == "embedded":
        embedded = EmbeddedBroker().start()
        try:
            bus = MqttBus(
                parse_broker_url(embedded.url),
                will=will,
                connect_timeout_s=connect_timeout_s,
                reconnect_timeout_s=reconnect_timeout_s,
            )
        except BaseException:
            embedded.stop()
            raise
        return BusHandle(bus, embedded)
    address = parse_broker_url(broker)
    return BusHandle(
        MqttBus(
            address, will=will, connect_timeout_s=connect_timeout_s, reconnect_timeout_s=reconnect_timeout_s
        )
    )
