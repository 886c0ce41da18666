"""The authenticator's cache of verified credentials (node.taxii.auth): a revoked token
or changed rights apply within ``ttl`` seconds, and a token is never trusted past
its own expiry, however recently it was verified.

The clocks the authenticator reads are replaced by one the test moves.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.store import Store, accounts
from node.store.audit import AuditQueue
from node.taxii import auth
from node.taxii.auth import Authenticator
from node.taxii.errors import TaxiiError

TTL = 30
START = 1_800_000_000 * 1_000_000  # microseconds since the epoch


class _Clock:
    """Both clocks of the authenticator: wall (microseconds) and monotonic (seconds)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def now_micros(self) -> int:
        return START + int(self.seconds * 1_000_000)

    def monotonic(self) -> float:
        return 1_000.0 + self.seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(auth, "now_micros", clock.now_micros)
    monkeypatch.setattr(auth, "time", clock)  # the module reads time.monotonic()
    return clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'auth.db'}")
    store.migrate()
    with store.write() as connection:
        accounts.add_user(connection, "alice", "alice-password-1")
    yield store
    store.close()


@pytest.fixture
def authenticator(store: Store, clock: _Clock) -> Authenticator:
    return Authenticator(store, logins=AuditQueue(store), ttl=TTL)


def _token(store: Store, expires: int | None) -> tuple[str, str]:
    with store.write() as connection:
        return accounts.create_token(connection, "alice", expires=expires)


def _refused(authenticator: Authenticator, header: str) -> int:
    with pytest.raises(TaxiiError) as raised:
        authenticator.authenticate(header, "127.0.0.1")
    return raised.value.status


def test_a_token_is_not_trusted_past_its_expiry_within_the_cache_period(
    authenticator: Authenticator, store: Store, clock: _Clock
) -> None:
    _, token = _token(store, expires=START + 5_000_000)  # 5 s, well inside the 30 s cache
    assert authenticator.authenticate(f"Bearer {token}", "127.0.0.1").name == "alice"
    clock.advance(4)
    assert authenticator.authenticate(f"Bearer {token}", "127.0.0.1").name == "alice"
    clock.advance(2)
    assert _refused(authenticator, f"Bearer {token}") == 401


def test_a_revoked_token_is_refused_once_the_cache_period_ends(
    authenticator: Authenticator, store: Store, clock: _Clock
) -> None:
    token_id, token = _token(store, expires=None)
    assert authenticator.authenticate(f"Bearer {token}", "127.0.0.1").name == "alice"
    with store.write() as connection:
        accounts.revoke_token(connection, token_id)
    clock.advance(TTL - 1)
    assert authenticator.authenticate(f"Bearer {token}", "127.0.0.1").name == "alice"
    clock.advance(2)
    assert _refused(authenticator, f"Bearer {token}") == 401


def test_a_changed_password_applies_once_the_cache_period_ends(
    authenticator: Authenticator, store: Store, clock: _Clock
) -> None:
    header = "Basic " + base64.b64encode(b"alice:alice-password-1").decode()
    assert authenticator.authenticate(header, "127.0.0.1").name == "alice"
    with store.write() as connection:
        accounts.set_password(connection, "alice", "alice-password-2")
    clock.advance(TTL + 1)
    assert _refused(authenticator, header) == 401
