"""The operations layer (node.operations) and the store's own exceptions, in process.

Operations are what the CLI and the console call: each checks its input,
raises a ``node.errors`` type for what it refuses (so nothing half-done stays:
the caller's transaction rolls back), and audits its own change.  Failed logins
are counted in a table of their own, and ``unlock`` forgets them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from node.errors import AlreadyExists, Conflict, InvalidValue, NodeError, NotFound
from node.operations import accounts as operations
from node.operations import audit as audit_operations
from node.operations import sync as sync_operations
from node.operations import tokens as token_operations
from node.operations.accounts import CertificateBinding, NewAccount
from node.store import Store, accounts, audit, syncstate
from node.store.audit import Action, AuditFilter, AuditQueue, AuditRecord, Direction
from node.store.catalog import Collection
from node.store.schema import audit_table, login_failures
from node.taxii.auth import MAX_FAILURES, Authenticator
from node.taxii.errors import TaxiiError
from node.timestamps import now_micros
from tests.conftest import migrated_store

ACTOR = "test:operator"
SHARED = Collection(id="6f1f0a9a-1111-4c3e-9a41-00000000000a", alias="shared", title="Shared")
OTHER = Collection(id="6f1f0a9a-1111-4c3e-9a41-00000000000b", alias="other", title="Other")
FINGERPRINT = "ab" * 32


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    """A migrated store with two collections: SQLite, and PostgreSQL when reachable."""
    store = migrated_store(store_url, tmp_path, SHARED, OTHER)
    yield store
    store.close()


def _audit_actions(store: Store) -> list[tuple[str, str, str]]:
    with store.read() as connection:
        rows = audit.entries(connection, limit=None)
    return [(row["action"], row["object_id"], row["actor"]) for row in rows]


def _add(store: Store, new: NewAccount, **kwargs) -> accounts.Account:
    with store.write() as connection:
        return operations.add_account(connection, new, actor=ACTOR, **kwargs)


def test_add_account_grants_binds_and_audits(store: Store) -> None:
    binding = CertificateBinding.parse(":".join(["AB"] * 32), None)
    new = NewAccount("node-b", "peer-password", peer="node-b", read=("shared",),
                     write=("shared", "other"), certificate=binding)  # fmt: skip
    account = _add(store, new, known_peers={"node-b"})
    assert account.peer == "node-b" and account.cert_fingerprint == FINGERPRINT
    assert account.rights_on(SHARED.id).can_read and account.rights_on(SHARED.id).can_write
    assert not account.rights_on(OTHER.id).can_read and account.rights_on(OTHER.id).can_write
    assert _audit_actions(store) == [
        ("user-added", "node-b", ACTOR),
        ("certificate-bound", "node-b", ACTOR),
    ]
    with store.read() as connection:
        [view] = operations.list_accounts(connection)
    assert view.as_dict() == {
        "name": "node-b",
        "role": "peer:node-b",
        "rights": {"other": "w", "shared": "rw"},
        "certificate": f"cert:sha256:{FINGERPRINT}",
    }


@pytest.mark.parametrize(
    ("new", "error", "fragment"),
    [
        (NewAccount("a", "short"), InvalidValue, "at least 8"),
        (NewAccount("a", "long-enough", read=("nope",)), NotFound, "known: other, shared"),
        (NewAccount("a", "long-enough", peer="nobody"), NotFound, "no peer named 'nobody'"),
    ],
)
def test_refused_accounts_leave_nothing_behind(store: Store, new, error, fragment) -> None:
    with pytest.raises(error, match=fragment):
        _add(store, new, known_peers={"node-b"})
    with store.read() as connection:
        assert accounts.list_accounts(connection) == []
    assert _audit_actions(store) == []


def test_duplicates_and_taken_certificates_are_refused_whole(store: Store) -> None:
    binding = CertificateBinding(fingerprint=FINGERPRINT)
    _add(store, NewAccount("first", "long-enough", certificate=binding))
    with pytest.raises(AlreadyExists, match="'first' already exists"):
        _add(store, NewAccount("first", "long-enough"))
    with pytest.raises(Conflict, match="already bound to user 'first'"):
        _add(store, NewAccount("second", "long-enough", certificate=binding))
    with store.read() as connection:
        assert [a.name for a in accounts.list_accounts(connection)] == ["first"]
    with pytest.raises(InvalidValue, match="not both"):
        CertificateBinding.parse(FINGERPRINT, "CN=x")
    with pytest.raises(InvalidValue, match="SHA-256"):
        CertificateBinding.parse("abc", None)


def test_grant_passwd_remove(store: Store) -> None:
    _add(store, NewAccount("alice", "password-one", read=("shared",)))
    with store.write() as connection:
        account = operations.grant(connection, "alice", write=("other",), actor=ACTOR)
        operations.set_password(connection, "alice", "password-two", actor=ACTOR)
    assert account.rights_on(OTHER.id).can_write and account.rights_on(SHARED.id).can_read
    with store.read() as connection:
        assert accounts.password_matches(
            "password-two", accounts.password_hash_of(connection, "alice")
        )
    with store.write() as connection, pytest.raises(InvalidValue):
        operations.set_password(connection, "alice", "short", actor=ACTOR)
    with store.write() as connection:
        operations.remove_account(connection, "alice", actor=ACTOR)
    for change in (
        lambda c: operations.remove_account(c, "alice", actor=ACTOR),
        lambda c: operations.grant(c, "alice", read=("shared",), actor=ACTOR),
        lambda c: operations.unlock(c, "alice", actor=ACTOR),
    ):
        with store.write() as connection, pytest.raises(NotFound, match="no user 'alice'"):
            change(connection)
    assert [a for a, _, _ in _audit_actions(store)] == [
        "user-added", "rights-granted", "password-changed", "user-removed",
    ]  # fmt: skip


def test_tokens_are_created_listed_and_revoked_with_audit(store: Store) -> None:
    _add(store, NewAccount("alice", "password-one"))
    with store.write() as connection:
        created = token_operations.create_token(
            connection, "alice", expires=token_operations.parse_expiry("1d"), label="opencti",
            actor=ACTOR,
        )  # fmt: skip
    assert created.secret.startswith(f"tnk_{created.id}.")
    with store.read() as connection:
        [view] = token_operations.list_tokens(connection, "alice")
    assert (view.id, view.state, view.label) == (created.id, "valid", "opencti")
    assert created.secret not in str(view.as_dict())
    with store.write() as connection:
        assert token_operations.revoke_token(connection, created.id, actor=ACTOR) == "alice"
    with store.read() as connection:
        [view] = token_operations.list_tokens(connection)
    assert view.state == "revoked" and view.since
    with store.write() as connection, pytest.raises(NotFound, match="no token"):
        token_operations.revoke_token(connection, "000000000000", actor=ACTOR)
    with (
        store.write() as connection,
        pytest.raises(
            Conflict, match=f"token {created.id} of alice was already revoked at {view.since}"
        ),
    ):
        token_operations.revoke_token(connection, created.id, actor=ACTOR)
    with store.read() as connection:
        [again] = token_operations.list_tokens(connection)
        assert again.since == view.since  # the revocation keeps its time
        with pytest.raises(NotFound, match="no user 'nosuch'"):
            token_operations.list_tokens(connection, "nosuch")
    with pytest.raises(InvalidValue, match="duration"):
        token_operations.parse_expiry("3x")
    actions = [a for a, _, _ in _audit_actions(store)]
    assert actions == ["user-added", "token-created", "token-revoked"]


@pytest.mark.parametrize("duration", ["99999999999999999999d", "3000000d", "500000w"])
def test_a_token_expiry_after_the_year_9999_is_refused(duration: str) -> None:
    with pytest.raises(InvalidValue, match="after the year 9999; use 'never'"):
        token_operations.parse_expiry(duration)
    assert token_operations.parse_expiry("2900000d") is not None  # the year 9966


def test_the_audit_reads_the_cli_and_console_share(store: Store) -> None:
    with store.write() as connection:
        for at, peer, action in (
            (10, "node-b", "sent"),
            (20, "node-c", "sent"),
            (30, "node-b", "withheld"),
            (40, "node-b", "sent"),
        ):
            record = AuditRecord(
                action=action, direction=Direction.PUSH, peer=peer, object_id=f"indicator-{at}"
            )
            audit.record(connection, [record], at=at)
    with store.read() as connection:

        def objects(**wanted) -> list[str]:
            rows = audit_operations.entries(connection, AuditFilter(**wanted))
            return [row["object_id"] for row in rows]

        assert objects() == ["indicator-40", "indicator-30", "indicator-20", "indicator-10"]
        assert objects(limit=2, oldest_first=True) == ["indicator-10", "indicator-20"]
        assert objects(peer="node-b", since=20, limit=None) == ["indicator-40", "indicator-30"]
        assert objects(action="sent", until=30) == ["indicator-20", "indicator-10"]
        newest = audit_operations.entries(connection, AuditFilter(limit=1))[0]
        assert objects(before_pk=newest["pk"], limit=1) == ["indicator-30"]
        unchecked = audit_operations.summary(connection, verify_up_to=3)
        checked = audit_operations.summary(connection, verify_up_to=4)
        verification = audit_operations.verify(connection)
    assert (unchecked.records, unchecked.verification) == (4, None)
    assert checked.verification == verification and verification.ok
    assert checked.head == unchecked.head == verification.head == newest["hash"]


def test_sync_lanes_read_back_as_directions_and_are_stored_as_before(store: Store) -> None:
    with store.write() as connection:
        state = syncstate.load(connection, "node-b", "shared<->shared", Direction.PULL)
        state.remote_cursor = "2026-01-01T00:00:00.000Z"
        syncstate.save(connection, state)
        refused = [{"id": "indicator--1", "version": "x", "message": "no"}]
        syncstate.add_dead_letters(connection, "node-b", "shared<->shared", Direction.PUSH, refused)
        stored = connection.execute(text("SELECT direction FROM sync_state")).scalars().all()
        lettered = connection.execute(text("SELECT direction FROM dead_letters")).scalars().all()
    assert (stored, lettered) == (["pull"], ["push"])
    [status] = sync_operations.sync_status(store)
    [letter] = sync_operations.dead_letters(store)
    assert status.direction is Direction.PULL and letter.direction is Direction.PUSH
    assert (status.cursor, status.dead_letters_waiting) == ("2026-01-01T00:00:00.000Z", 0)
    assert status.as_dict()["direction"] == "pull" and f"{letter.direction}" == "push"


def test_every_audit_action_is_named_once_and_fits_its_column() -> None:
    values = [action.value for action in Action]
    assert len(set(values)) == len(values)
    assert max(map(len, values)) <= audit_table.c.action.type.length
    admin = {a for a in values if a.startswith(("user-", "rights-", "role-", "password-"))}
    assert admin == {"user-added", "user-removed", "user-unlocked", "rights-granted",
                     "role-granted", "role-removed", "password-changed"}  # fmt: skip


def test_store_errors_are_node_errors_and_invalid_values_are_value_errors() -> None:
    for error in (NotFound, AlreadyExists, Conflict, InvalidValue):
        assert issubclass(error, NodeError)
    assert issubclass(InvalidValue, ValueError)
    assert not issubclass(NotFound, ValueError)  # never caught as a bad value by accident


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_failed_logins_lock_out_until_unlocked(store: Store) -> None:
    _add(store, NewAccount("alice", "right-password"))
    authenticator = Authenticator(store, AuditQueue(store), ttl=0)
    for _ in range(MAX_FAILURES):
        with pytest.raises(TaxiiError) as failed:
            authenticator.authenticate(_basic("alice", "wrong-password"), "192.0.2.1")
        assert failed.value.status == 401
    with pytest.raises(TaxiiError) as locked:
        authenticator.authenticate(_basic("alice", "right-password"), "192.0.2.1")
    assert locked.value.status == 429
    # Counted per address: another address is not locked out.
    assert (
        authenticator.authenticate(_basic("alice", "right-password"), "192.0.2.2").name == "alice"
    )
    with store.read() as connection:
        rows = connection.execute(select(login_failures.c.account, login_failures.c.source))
        assert {tuple(row) for row in rows} == {("alice", "192.0.2.1")}
    with store.write() as connection:
        assert operations.unlock(connection, "alice", actor=ACTOR) == MAX_FAILURES
    assert (
        authenticator.authenticate(_basic("alice", "right-password"), "192.0.2.1").name == "alice"
    )
    unlocked = [r for r in _audit_actions(store) if r[0] == "user-unlocked"]
    assert unlocked == [("user-unlocked", "alice", ACTOR)]


def test_unlock_also_clears_the_failures_of_the_accounts_tokens(store: Store) -> None:
    _add(store, NewAccount("alice", "right-password"))
    with store.write() as connection:
        created = token_operations.create_token(
            connection, "alice", expires=None, label=None, actor=ACTOR
        )
    authenticator = Authenticator(store, AuditQueue(store), ttl=0)
    wrong = f"Bearer tnk_{created.id}.not-the-secret"
    for _ in range(MAX_FAILURES):
        with pytest.raises(TaxiiError):
            authenticator.authenticate(wrong, "192.0.2.1")
    with pytest.raises(TaxiiError) as locked:
        authenticator.authenticate(f"Bearer {created.secret}", "192.0.2.1")
    assert locked.value.status == 429
    with store.write() as connection:
        operations.unlock(connection, "alice", actor=ACTOR)
    assert authenticator.authenticate(f"Bearer {created.secret}", "192.0.2.1").name == "alice"


def test_an_expired_token_is_told_it_expired_and_a_wrong_one_is_not(store: Store) -> None:
    _add(store, NewAccount("alice", "right-password"))
    with store.write() as connection:
        created = token_operations.create_token(
            connection, "alice", expires=now_micros() - 1_000_000, label=None, actor=ACTOR
        )
    authenticator = Authenticator(store, AuditQueue(store), ttl=0)
    with pytest.raises(TaxiiError) as expired:
        authenticator.authenticate(f"Bearer {created.secret}", "192.0.2.1")
    assert (expired.value.status, str(expired.value)) == (401, "token expired")
    with pytest.raises(TaxiiError) as wrong:  # the expiry is told only to its holder
        authenticator.authenticate(f"Bearer tnk_{created.id}.not-the-secret", "192.0.2.1")
    assert str(wrong.value) == "wrong token"


def test_the_429_line_of_the_cli_says_what_to_do_not_that_the_server_is_down() -> None:
    from node.cli.client import _remote_problem
    from node.errors import RemoteError

    locked = RemoteError("GET http://127.0.0.1:1/api/: HTTP 429: too many failed logins",
                         transient=True, status=429)  # fmt: skip
    message = _remote_problem(locked).format_message()
    assert "is the server running" not in message
    assert "taxii-node user unlock NAME" in message
    down = _remote_problem(RemoteError("GET ...: connection refused", transient=True))
    assert "is the server running" in down.format_message()


def test_collection_names_never_mean_two_collections(store: Store) -> None:
    """upsert refuses an alias another collection holds or that is another's id; a
    store of an older version holding such an alias still finds by id first."""
    from node.store import catalog
    from node.store.schema import collections

    moved = Collection(id="6f1f0a9a-1111-4c3e-9a41-00000000000c", alias="shared", title="Moved")
    shadow = Collection(id="6f1f0a9a-1111-4c3e-9a41-00000000000d", alias=OTHER.id, title="S")
    with store.write() as connection:
        with pytest.raises(Conflict, match=f"alias 'shared' already belongs to .*{SHARED.id}"):
            catalog.upsert(connection, moved)
        with pytest.raises(Conflict, match="is the id of another collection"):
            catalog.upsert(connection, shadow)
    with store.write() as connection:  # as an older version let it be stored
        connection.execute(collections.insert().values(
            id=shadow.id, alias=shadow.alias, title=shadow.title, media_types="[]",
            last_date_added=0))  # fmt: skip
    with store.read() as connection:
        found = catalog.find(connection, OTHER.id)
        assert found is not None and found.id == OTHER.id
        by_alias = catalog.find(connection, "shared")
        assert by_alias is not None and by_alias.id == SHARED.id


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (NewAccount("node-b", "peer-password", is_admin=True, peer="node-b"), "cannot be an admin"),
        (NewAccount("", "password-one"), "the account name is empty"),
        (NewAccount("a:b", "password-one"), "a colon"),
        (NewAccount("a\x7fb", "password-one"), "control character"),
        (NewAccount("n" * 129, "password-one"), "at most 128"),
    ],
    ids=["admin-peer", "empty", "colon", "control", "long"],
)
def test_add_account_refuses_what_cannot_sign_in_or_must_not_be_admin(
    store: Store, new: NewAccount, expected: str
) -> None:
    with store.write() as connection, pytest.raises(InvalidValue, match=expected):
        operations.add_account(connection, new, actor=ACTOR)
    with store.read() as connection:
        assert accounts.load_account(connection, new.name) is None
