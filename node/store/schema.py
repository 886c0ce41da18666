"""The store's schema and its versioned migrations.

One schema serves SQLite and PostgreSQL.  Migrations are numbered Python steps
recorded in ``schema_version``; ``migrate`` applies the missing ones in order,
each in its own transaction, so ``taxii-node init`` both creates a new store
and upgrades an old one.  (A dozen tables do not need Alembic's machinery; the
numbered steps give the same guarantee with nothing to configure.)
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from .engine import write_transaction

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest number such a column holds (SQLite INTEGER, PostgreSQL BIGINT): no row
# has a larger id, and the drivers refuse to bind one (OverflowError).
MAX_STORE_INTEGER = 2**63 - 1

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", BigInteger, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

collections = Table(
    "collections",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("alias", String(128), unique=True),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("media_types", Text, nullable=False),  # JSON list
    # High-water mark of date_added; writers lock this row (PostgreSQL) so
    # date_added grows in commit order.
    Column("last_date_added", BigInteger, nullable=False, default=0),
)

objects_table = Table(
    "objects",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("type", String(250), nullable=False),
    Column("spec_version", String(8), nullable=False),
    # modified, else created, else 0 (an SCO without either is one version).
    Column("version", BigInteger, nullable=False),
    Column("version_text", String(40), nullable=False),
    Column("date_added", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # the object's JSON, as stored
    # Name of the peer this version came from; NULL for local publications.
    Column("origin", String(128)),
    # Markers of the newest and the oldest version of each (collection, object)
    # by ``version`` (migration 5), kept by every insert and delete in the same
    # transaction, so that match[version]=last/first is a column test and a
    # page is an ordered index range instead of a subquery per row.
    Column("is_latest", Boolean(create_constraint=False), nullable=False, default=False),
    Column("is_first", Boolean(create_constraint=False), nullable=False, default=False),
    # The account that published a local version (migration 11; NULL for a
    # peer's version, whose origin says where it came from).  Four-eyes release
    # needs it.  In the row rather than a table of its own: a POST of 100 then
    # writes no second index of random keys (a third fewer pages per commit).
    Column("publisher", String(128)),
    UniqueConstraint("collection_id", "object_id", "version", name="uq_objects_version"),
    UniqueConstraint("collection_id", "date_added", name="uq_objects_date_added"),
)
Index(
    "ix_objects_type",
    objects_table.c.collection_id,
    objects_table.c.type,
    objects_table.c.date_added,
)

statuses_table = Table(
    "statuses",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("collection_id", String(64), nullable=False),
    Column("request_timestamp", BigInteger, nullable=False),
    Column("total_count", Integer, nullable=False),
    Column("success_count", Integer, nullable=False),
    Column("failure_count", Integer, nullable=False),
    Column("successes", Text, nullable=False),  # JSON list of status-details
    Column("failures", Text, nullable=False),
    # The account that made the POST (migration 7): only it and admins read the status.
    Column("owner", String(128)),
)
Index("ix_statuses_request_timestamp", statuses_table.c.request_timestamp)

users = Table(
    "users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    # Set when the account is a partner node's sync account: what it reads is
    # filtered by the egress policy for that peer.
    Column("peer", String(128)),
    Column("created", BigInteger, nullable=False),
    # A client certificate the account is bound to (migration 4): the SHA-256
    # of its DER form (lowercase hex), or its subject (canonical, see
    # accounts.canonical_subject).  A bound account must present it.
    Column("cert_fingerprint", String(64)),
    Column("cert_subject", Text),
)

grants = Table(
    "grants",
    metadata,
    Column("user_name", String(128), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("collection_id", String(64), ForeignKey("collections.id"), nullable=False),
    Column("can_read", Boolean, nullable=False),
    Column("can_write", Boolean, nullable=False),
    PrimaryKeyConstraint("user_name", "collection_id"),
)

audit_table = Table(
    "audit",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("peer", String(128)),
    Column("direction", String(16), nullable=False),  # an audit.Direction
    Column("collection_id", String(64)),
    Column("object_id", String(300)),
    Column("version", String(40)),
    Column("action", String(32), nullable=False),  # an audit.Action
    Column("rule", String(64)),
    Column("detail", Text),
    Column("actor", String(128)),  # the account that acted, for logins and admin changes
    # Hash chain: each record's hash covers its fields and the previous hash,
    # so editing, deleting or reordering records breaks the chain.
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_at", audit_table.c.at)

sync_state = Table(
    "sync_state",
    metadata,
    Column("peer", String(128), nullable=False),
    Column("mapping", String(300), nullable=False),  # "local<->remote"
    Column("direction", String(8), nullable=False),  # Direction.PUSH or PULL
    Column("cursor", BigInteger, nullable=False, default=0),  # push: local date_added
    Column("remote_cursor", String(40)),  # pull: the peer's X-TAXII-Date-Added-Last
    Column("last_success", BigInteger),
    Column("last_attempt", BigInteger),
    Column("last_error", Text),
    Column("sent", BigInteger, nullable=False, default=0),
    Column("received", BigInteger, nullable=False, default=0),
    Column("withheld", BigInteger, nullable=False, default=0),
    Column("dead_lettered", BigInteger, nullable=False, default=0),
    # Versions the receiving side already held (migration 9): counted apart from
    # ``sent`` and ``received``, which count versions that were new there.
    Column("already_present", BigInteger, nullable=False, default=0),
    # Where a pull round that stopped early goes on (migration 14): the peer's next
    # token, as JSON with the cursor it belongs to (node.sync.pull).
    Column("pull_resume", Text),
    # How many times an operator moved the cursor (migration 15, `sync set-cursor`):
    # a round that loaded the state before a move never moves the cursor after it.
    Column("cursor_moves", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("peer", "mapping", "direction"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("peer", String(128), nullable=False),
    Column("mapping", String(300), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", String(40)),
    Column("reason", Text, nullable=False),  # the receiving side's answer
    # ``at`` is the first refusal; the last one and how many there were
    # (migration 9): a version refused again is the same dead letter.
    Column("last_at", BigInteger),
    Column("attempts", Integer, nullable=False, default=1),
)

# Dependencies (identities, marking definitions) a peer has acknowledged, per
# mapping and version (migration 9), so that each is sent once per peer
# collection and not again in every round that references it.
peer_dependencies = Table(
    "peer_dependencies",
    metadata,
    Column("peer", String(128), nullable=False),
    Column("mapping", String(300), nullable=False),
    Column("object_id", String(300), nullable=False),
    Column("version", String(40), nullable=False),  # as sent: modified, created or ""
    Column("at", BigInteger, nullable=False),
    PrimaryKeyConstraint("peer", "mapping", "object_id", "version"),
)


api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_name", String(128), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(64), nullable=False),  # sha256 of the secret part
    Column("label", Text),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger),
    Column("revoked", BigInteger),
)

# Failed logins, counted for throttling (migration 6): one row per failure of an
# account (a user name, or ``token:ID`` for a Bearer token) from a source address.
login_failures = Table(
    "login_failures",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("account", String(160), nullable=False),
    Column("source", String(128), nullable=False),
    Column("at", BigInteger, nullable=False),
)
Index("ix_login_failures", login_failures.c.account, login_failures.c.source, login_failures.c.at)


def _create_base_tables(connection: Connection) -> None:
    metadata.create_all(
        connection,
        tables=[settings, collections, objects_table, statuses_table, users, grants],
    )


def _create_sync_tables(connection: Connection) -> None:
    metadata.create_all(connection, tables=[audit_table, sync_state, dead_letters])


def _create_token_tables(connection: Connection) -> None:
    metadata.create_all(connection, tables=[api_tokens])
    # Plain DDL rather than an Index object, which would attach itself to the
    # shared Table and be created again by the next store's migration 2.
    connection.execute(
        text("CREATE INDEX IF NOT EXISTS ix_audit_actor ON audit (actor, action, at)")
    )


def _add_certificate_bindings(connection: Connection) -> None:
    # A store created from this module already has the columns (migration 1
    # creates ``users`` as declared above); an older one gets them here.
    present = {column["name"] for column in inspect(connection).get_columns("users")}
    for name, sql_type in (("cert_fingerprint", "VARCHAR(64)"), ("cert_subject", "TEXT")):
        if name not in present:
            connection.execute(text(f"ALTER TABLE users ADD COLUMN {name} {sql_type}"))


# The markers' definition, one SQL expression per marker for both stores (a
# comparison is a boolean in PostgreSQL and 0/1 in SQLite): used to backfill
# them and to repair them after a delete.
_SAME_OBJECT = "s.collection_id = objects.collection_id AND s.object_id = objects.object_id"
MARKER_EXPRESSIONS = {
    "is_latest": f"version = (SELECT MAX(s.version) FROM objects s WHERE {_SAME_OBJECT})",
    "is_first": f"version = (SELECT MIN(s.version) FROM objects s WHERE {_SAME_OBJECT})",
}
# The page of the default match[version]=last (3.4.2) is a range of this index.
LATEST_INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS ix_objects_latest ON objects (collection_id, date_added) "
    "WHERE is_latest"
)


def _add_version_markers(connection: Connection) -> None:
    present = {column["name"] for column in inspect(connection).get_columns("objects")}
    false = "0" if connection.dialect.name == "sqlite" else "false"
    for name in MARKER_EXPRESSIONS:
        if name not in present:
            connection.execute(
                text(f"ALTER TABLE objects ADD COLUMN {name} BOOLEAN NOT NULL DEFAULT {false}")
            )
    for name, expression in MARKER_EXPRESSIONS.items():
        connection.execute(text(f"UPDATE objects SET {name} = ({expression})"))
    connection.execute(text(LATEST_INDEX_DDL))
    if connection.dialect.name == "postgresql":
        _keep_statistics_current(connection)
    connection.execute(text("ANALYZE objects"))


def _keep_statistics_current(connection: Connection) -> None:
    """Analyse ``objects`` after 1% of it changed, not PostgreSQL's default 10%.

    The planner's choices on this table (which index serves a filter, whether a
    page is an index range) depend on its row count and the markers' spread;
    a collection that grows by bulk publication would otherwise be planned
    from statistics of a much smaller table for a long time.
    """
    connection.execute(
        text(
            "ALTER TABLE objects SET (autovacuum_analyze_scale_factor = 0.01, "
            "autovacuum_analyze_threshold = 1000, autovacuum_vacuum_scale_factor = 0.05)"
        )
    )


def _create_login_failures(connection: Connection) -> None:
    metadata.create_all(connection, tables=[login_failures])


def _create_exchange_tables(connection: Connection) -> None:
    """Release queue, quarantine, recalls, the releaser role and publishers of versions;
    their tables are declared in the modules that query them."""
    from . import publishers, quarantine, recalls, releases, roles

    metadata.create_all(
        connection,
        tables=[
            roles.account_roles,
            publishers.legacy_publishers,
            releases.release_queue,
            quarantine.quarantine_table,
            recalls.recall_outbox,
            recalls.recalled,
        ],
    )
    recalls.create_index(connection)


def _add_status_owners(connection: Connection) -> None:
    present = {column["name"] for column in inspect(connection).get_columns("statuses")}
    if "owner" not in present:
        connection.execute(text("ALTER TABLE statuses ADD COLUMN owner VARCHAR(128)"))


def _add_delivery_bookkeeping(connection: Connection) -> None:
    """Dead-letter attempts, already-present counts, dependencies sent per peer."""
    letters = {"last_at": "BIGINT", "attempts": "INTEGER NOT NULL DEFAULT 1"}
    _add_columns(connection, "dead_letters", letters)
    connection.execute(text("UPDATE dead_letters SET last_at = at WHERE last_at IS NULL"))
    _add_columns(connection, "sync_state", {"already_present": "BIGINT NOT NULL DEFAULT 0"})
    metadata.create_all(connection, tables=[peer_dependencies])


def _create_release_cursors(connection: Connection) -> None:
    from . import releases

    metadata.create_all(connection, tables=[releases.release_cursors])


def _add_columns(connection: Connection, table: str, columns: dict[str, str]) -> None:
    """Add the columns a store made before them lacks (a new store has them already)."""
    present = {column["name"] for column in inspect(connection).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in present:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _keep_publishers_in_objects(connection: Connection) -> None:
    """Move the publisher of each local version from the publishers table (migration 7)
    into its objects row, and drop the table.

    A version deleted and posted again no longer meets its old publisher row
    (which made the new publication fail), and a POST writes one row per
    version instead of two.
    """
    from .publishers import legacy_publishers

    _add_columns(connection, "objects", {"publisher": "VARCHAR(128)"})
    connection.execute(
        text(
            "UPDATE objects SET publisher = (SELECT p.account FROM publishers p "
            "WHERE p.collection_id = objects.collection_id "
            "AND p.object_id = objects.object_id AND p.version = objects.version) "
            "WHERE origin IS NULL"
        )
    )
    legacy_publishers.drop(connection)


def _drop_audit_actor_index(connection: Connection) -> None:
    """Migration 3's ``ix_audit_actor`` served the count of failed logins, which
    migration 6 moved to a table of its own; no query reads the audit by actor
    since, and every audit record (a thousand per sync batch) paid for the index."""
    connection.execute(text("DROP INDEX IF EXISTS ix_audit_actor"))


def _create_concealed_versions(connection: Connection) -> None:
    from . import concealed

    metadata.create_all(connection, tables=[concealed.concealed])


def _add_pull_resume(connection: Connection) -> None:
    _add_columns(connection, "sync_state", {"pull_resume": "TEXT"})


def _add_cursor_moves(connection: Connection) -> None:
    _add_columns(connection, "sync_state", {"cursor_moves": "BIGINT NOT NULL DEFAULT 0"})


def _create_ended_sessions(connection: Connection) -> None:
    from . import console_sessions

    metadata.create_all(connection, tables=[console_sessions.ended_sessions])


# Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "objects, collections, statuses, accounts", _create_base_tables),
    (2, "sync state, dead letters and audit", _create_sync_tables),
    (3, "API tokens, audit index for login throttling", _create_token_tables),
    (4, "client certificate bindings of accounts", _add_certificate_bindings),
    (5, "latest and first version markers of objects, index of latest versions",
     _add_version_markers),
    (6, "failed logins, counted apart from the audit trail", _create_login_failures),
    (7, "release queue, quarantine, recalls, releaser role, publishers of versions",
     _create_exchange_tables),
    (8, "owners of status resources", _add_status_owners),
    (9, "dead-letter attempts, already-present counts, dependencies sent per peer",
     _add_delivery_bookkeeping),
    (10, "release queue cursors (upkeep from the last version decided)",
     _create_release_cursors),
    (11, "publishers of versions kept in their objects rows", _keep_publishers_in_objects),
    (12, "no index of the audit by actor (unused since migration 6)", _drop_audit_actor_index),
    (13, "versions a partner posted that were refused for what it may not see",
     _create_concealed_versions),
    (14, "where a pull round that stopped early goes on", _add_pull_resume),
    (15, "operator moves of sync cursors, counted", _add_cursor_moves),
    (16, "console sessions ended by signing out", _create_ended_sessions),
]  # fmt: skip

LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(engine: Engine) -> int:
    """The schema version of the store: the last migration before the first one missing
    (0 for an empty database), so a store missing any step is not current."""
    if not inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as connection:
        applied = set(connection.execute(select(schema_version.c.version)).scalars())
    return next((version - 1 for version, _, _ in MIGRATIONS if version not in applied),
                LATEST_VERSION)  # fmt: skip


def migrate(engine: Engine, now: int) -> list[str]:
    """Apply every migration newer than the store; return their descriptions."""
    metadata.create_all(engine, tables=[schema_version])
    applied = []
    for version, description, step in MIGRATIONS:
        with write_transaction(engine) as connection:
            done = connection.execute(
                select(schema_version.c.version).where(schema_version.c.version == version)
            ).first()
            if done:
                continue
            step(connection)
            connection.execute(schema_version.insert().values(version=version, applied_at=now))
        applied.append(f"{version}: {description}")
    return applied
