"""Message authentication: per-agent keys created by the run, tags bound to what a message is.

Every message that can change a result carries an ``auth`` tag over its topic, a newline and a digest:
the topic names the run, the service, the round (or tick) and the sender; the digest is the SHA-256 of
the message's content (a model's tensors and metadata, a JSON document without its ``auth``). A tag
made for one round, sender or run does not verify for another, so a replayed message re-labelled for
the next round is refused like a forged one.

- **Devices and hosts → network** (updates, inference batches): HMAC-SHA256 with the sender's own key.
  The run derives every agent's key from a random root (``HMAC(root, run id / agent id)``), so the
  network can check any sender without storing a million keys, and hands each host only the keys of
  the devices it holds.
- **Network → hosts** (round plans, global models, ticks, answers): Ed25519 signatures by the run's key;
  hosts hold only the public key, so a device (or a host) cannot forge what the network says.

Keys are random per run (``secrets``), never derived from the seed: results stay reproducible, tags do
not. Standard library ``hmac`` and the ``cryptography`` package's Ed25519; nothing home-made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from twin.errors import ConfigError

NETWORK = "network"
CREDENTIALS_SCHEMA = "twin.credentials.v1"


def signed_bytes(topic: str, digest: bytes) -> bytes:
    """What a tag covers: the message's topic (run, service, round, sender) and its content digest."""
    return topic.encode() + b"\n" + digest


def json_digest(document: Mapping[str, Any]) -> bytes:
    """SHA-256 of a JSON document without its ``auth`` field, in canonical form (sorted, compact)."""
    body = {k: v for k, v in document.items() if k != "auth"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    ).digest()


def sign_document(
    document: Mapping[str, Any], topic: str, sign: Callable[[str, bytes], str]
) -> dict[str, Any]:
    """``document`` with its ``auth`` tag: ``sign(topic, json_digest(document))``."""
    body = {k: v for k, v in document.items() if k != "auth"}
    return {**body, "auth": sign(topic, json_digest(body))}


class RunKeys:
    """The run's secrets: a root for the agents' HMAC keys and the network's Ed25519 key pair."""

    def __init__(self, run_id: str, *, root: bytes | None = None) -> None:
        self.run_id = run_id
        self._root = root if root is not None else secrets.token_bytes(32)
        self._network = Ed25519PrivateKey.generate()
        self.network_public_key = self._network.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def agent_key(self, agent_id: str) -> bytes:
        """The HMAC key of a device or host of this run."""
        label = f"twin/v1/{self.run_id}/agent/{agent_id}".encode()
        return hmac.digest(self._root, label, "sha256")

    def sign(self, topic: str, digest: bytes) -> str:
        """The network's signature (hex) over a message."""
        return self._network.sign(signed_bytes(topic, digest)).hex()

    def verify(self, sender: str, topic: str, digest: bytes, tag: object) -> bool:
        """Whether ``tag`` is ``sender``'s HMAC over the message (constant-time)."""
        if not isinstance(tag, str):
            return False
        expected = hmac.digest(self.agent_key(sender), signed_bytes(topic, digest), "sha256").hex()
        return hmac.compare_digest(expected, tag)

    def credentials(self, agent_ids: Iterable[str] | None = None) -> Credentials:
        """What a host of ``agent_ids`` needs: their keys and the network's public key.

        ``None``: every agent's key, derived when asked (the run's own in-process host).
        """
        keys: Mapping[str, bytes] = (
            _DerivedKeys(self) if agent_ids is None else {a: self.agent_key(a) for a in agent_ids}
        )
        return Credentials(self.run_id, keys, self.network_public_key)


class _DerivedKeys(Mapping[str, bytes]):
    """Every agent's key of a run, derived on demand (no table of a million keys)."""

    def __init__(self, keys: RunKeys) -> None:
        self._keys = keys

    def __getitem__(self, agent_id: str) -> bytes:
        return self._keys.agent_key(agent_id)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class Credentials:
    """A host's keys: its agents' HMAC keys and the network's public key (to check what it says)."""

    run_id: str
    keys: Mapping[str, bytes]
    network_public_key: bytes

    def sign(self, sender: str, topic: str, digest: bytes) -> str:
        """``sender``'s HMAC (hex) over a message; KeyError if this host does not hold ``sender``."""
        return hmac.digest(self.keys[sender], signed_bytes(topic, digest), "sha256").hex()

    def verify_network(self, topic: str, digest: bytes, tag: object) -> bool:
        """Whether ``tag`` is the network's signature over the message."""
        if not isinstance(tag, str):
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.network_public_key).verify(
                bytes.fromhex(tag), signed_bytes(topic, digest)
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_json(self) -> str:
        """The credentials file of an external device (keep it secret: it lets one act as the device)."""
        return json.dumps(
            {
                "schema": CREDENTIALS_SCHEMA,
                "run_id": self.run_id,
                "keys": {a: k.hex() for a, k in sorted(self.keys.items())},
                "network_public_key": self.network_public_key.hex(),
            },
            indent=2,
        )

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read a credentials file written by the run.

        Raises:
            ConfigError: missing, unreadable or malformed file.
        """
        try:
            doc = json.loads(path.read_text())
            if doc.get("schema") != CREDENTIALS_SCHEMA:
                raise ValueError(f"schema is not {CREDENTIALS_SCHEMA}")
            keys = {str(a): bytes.fromhex(k) for a, k in doc["keys"].items()}
            return cls(str(doc["run_id"]), keys, bytes.fromhex(doc["network_public_key"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"--credentials {path}: not a credentials file of a run ({exc})") from exc

    def save(self, path: Path) -> None:
        """Write the credentials file, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(self.to_json())
