"""Property tests: `--set` and broker URLs give a valid value or a ConfigError, never anything else."""

import dataclasses
import ipaddress
import math
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.url import BrokerAddress, parse_broker_url
from twin.config import apply_overrides, flatten, parse_set_options
from twin.errors import ConfigError
from usecases import registry

SCENARIOS = ("home-health", "robotaxi", "seed-federated-training")
CONFIGS = {name: registry.get(name).default_config() for name in SCENARIOS}
KEYS = sorted({key for config in CONFIGS.values() for key in flatten(config)})

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers_as_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e-400", "0", "-0"]),
)
values = st.one_of(
    numbers_as_text,
    st.sampled_from(["true", "false", "none", "", " ", "fedavg", "int8", "UMa", "a,b", ",", "="]),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=20))
set_items = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", keys, values),
    st.text(max_size=30),
)


def _assert_valid(config: Any) -> None:
    """A config every value of which is finite and that survives re-validation unchanged."""
    for key, value in flatten(config).items():
        if isinstance(value, float):
            assert math.isfinite(value), (key, value)
    assert dataclasses.replace(config) == config  # __post_init__ of every section accepts it again


@PROPERTY
@given(scenario=st.sampled_from(SCENARIOS), items=st.lists(set_items, max_size=4))
def test_set_options_give_a_valid_config_or_a_config_error(scenario: str, items: list[str]) -> None:
    """Any `--set` strings: a valid, finite config, or ConfigError — never another exception."""
    config = CONFIGS[scenario]
    try:
        result = apply_overrides(config, parse_set_options(items))
    except ConfigError as exc:
        assert str(exc)
        return
    _assert_valid(result)


@PROPERTY
@given(key=st.sampled_from(KEYS), value=numbers_as_text)
def test_accepted_numbers_are_finite_and_the_given_ones(key: str, value: str) -> None:
    """A number `--set` accepts is finite; NaN and ±inf (and overflowing text) are always refused."""
    scenario = next(name for name, config in CONFIGS.items() if key in flatten(config))
    try:
        result = apply_overrides(CONFIGS[scenario], {key: value})
    except ConfigError:
        return
    got = flatten(result)[key]
    if isinstance(got, int | float) and not isinstance(got, bool):
        assert math.isfinite(got)
        assert value.strip().lower() not in ("nan", "inf", "-inf", "infinity", "1e400", "-1e400")


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400", "NaN", "Infinity"])
@pytest.mark.parametrize("key", ["fl.lr", "fl.deadline_s", "radio.carrier_ghz", "qoais.min_rate_bps"])
def test_non_finite_floats_are_refused_naming_the_key(key: str, raw: str) -> None:
    """Every float key refuses NaN and ±inf with a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(CONFIGS["home-health"], {key: raw})


@PROPERTY
@given(url=st.one_of(st.text(), st.builds(str.__add__, st.sampled_from(["mqtt://", "mqtts://"]), st.text())))
def test_broker_url_parsing_raises_only_config_error(url: str) -> None:
    """Any text as --broker: a BrokerAddress with a port in 1…65535, or ConfigError — nothing else."""
    try:
        address = parse_broker_url(url)
    except ConfigError as exc:
        assert "--broker" in str(exc)
        return
    assert isinstance(address, BrokerAddress)
    assert 1 <= address.port <= 65535
    assert address.host


hostnames = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: str(ipaddress.IPv6Address(ip))),
)
credentials = st.text(min_size=1, max_size=12)


@PROPERTY
@given(
    host=hostnames,
    port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    tls=st.booleans(),
    user=st.one_of(st.none(), credentials),
    password=st.one_of(st.none(), credentials),
)
def test_valid_broker_urls_round_trip(
    host: str, port: int | None, tls: bool, user: str | None, password: str | None
) -> None:
    """A generated mqtt[s]:// URL parses back to its host, port (or the scheme's default), TLS, user."""
    # Prepare
    netloc_host = f"[{host}]" if ":" in host else host
    login = ""
    if user is not None:
        login = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "") + "@"
    url = f"{'mqtts' if tls else 'mqtt'}://{login}{netloc_host}{f':{port}' if port is not None else ''}"
    # Execute
    address = parse_broker_url(url)
    # Assert
    assert address.host == host
    assert address.port == (port if port is not None else (8883 if tls else 1883))
    assert address.tls is tls
    assert address.username == user
    assert address.password == (password if user is not None else None)
    again = parse_broker_url(address.display())
    assert (again.host, again.port, again.tls, again.username) == (host, address.port, tls, user)
