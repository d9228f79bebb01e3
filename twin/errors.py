"""Errors of aiaas-twin: one base class, specific subclasses, messages that say what to do.

The CLI turns every :class:`TwinError` into a one-line message and a non-zero exit code
(see :data:`EXIT_CODES`), never a traceback.
"""


class TwinError(Exception):
    """Base class of every error a user can cause or fix."""

    exit_code: int = 1


class ConfigError(TwinError):
    """A scenario configuration value or ``--set`` override is invalid."""

    exit_code = 2


class UnknownScenarioError(TwinError):
    """The requested scenario is not registered."""

    exit_code = 2


class BrokerUnreachableError(TwinError):
    """The MQTT broker could not be reached (at start, or again after a reconnect timeout)."""

    exit_code = 3


class PayloadError(TwinError):
    """An MQTT payload is malformed, oversized, unknown or replayed.

    Raised by codecs; the bus catches it, logs it and counts it in the run's stats.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RunAbortedError(TwinError):
    """A run stopped before its end (broker gone for longer than the reconnect timeout)."""

    exit_code = 4


EXIT_CODES = {
    0: "success",
    1: "error",
    2: "bad input: unknown scenario, bad config key or value",
    3: "MQTT broker unreachable",
    4: "run aborted mid-way (results recorded so far are kept)",
}
