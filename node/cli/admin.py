"""Operator commands: init, serve, user, check."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from node.collection_files import load_collection_files
from node.store import accounts, catalog

from .common import CommandError, NodeContext, admin_audit

pass_node = click.make_pass_decorator(NodeContext)


@click.command()
@pass_node
def init(node: NodeContext) -> None:
    """Create or migrate the store and load the collection definitions.

    Safe to run again: it applies only missing migrations and updates
    collections from their files.

    \b
    Example:
      taxii-node --config config/node-a.toml init
    """
    config = node.config()
    store = node.store()
    try:
        applied = store.migrate()
        for step in applied:
            click.echo(f"migrated: {step}")
        if config.taxii.collections_dir:
            definitions = load_collection_files(config.taxii.collections_dir)
            with store.write() as connection:
                for collection in definitions:
                    created = catalog.upsert(connection, collection)
                    verb = "created" if created else "updated"
                    click.echo(f"collection {verb}: {collection.alias or collection.id}")
        click.echo(f"store ready: {store.engine.url.render_as_string(hide_password=True)}")
    finally:
        store.close()


@click.command()
@pass_node
def serve(node: NodeContext) -> None:
    """Serve TAXII 2.1 with gunicorn until stopped (SIGTERM or Ctrl-C).

    Workers, threads, host, port and TLS (tls_cert, tls_key, tls_client_ca)
    come from the [server] table; plain HTTP needs insecure_http = true and a
    loopback host.

    \b
    Example:
      taxii-node --config config/node-a.toml serve
    """
    from node.server import check_tls
    from node.server import serve as run_server

    config = node.config()
    check_tls(config)
    node.ready_store().close()
    server = config.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    click.echo(f"serving {config.name} on {server.scheme}://{host}:{server.port}/")
    run_server(config)


@click.group()
def user() -> None:
    """Manage accounts: add, list, grant, passwd, remove.

    \b
    Example:
      echo 's3cret-pass' | taxii-node --config config/node-a.toml \\
          user add alice --password-stdin --read shared
      taxii-node --config config/node-a.toml user list
    """


def _collection_ids(connection, names: tuple[str, ...]) -> list[str]:
    ids = []
    for name in names:
        found = catalog.find(connection, name)
        if found is None:
            known = ", ".join(c.alias or c.id for c in catalog.all_collections(connection))
            raise CommandError(f"unknown collection {name!r} (known: {known or 'none'})")
        ids.append(found.id)
    return ids


def _grant_all(connection, name: str, readable: list[str], writable: list[str]) -> None:
    for collection_id in set(readable) | set(writable):
        accounts.grant(
            connection,
            name,
            collection_id,
            read=collection_id in readable,
            write=collection_id in writable,
        )


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise CommandError("the password must have at least 8 characters")
    return password


def _certificate_binding(fingerprint: str | None, subject: str | None):
    """(fingerprint, subject) as stored, from --cert-fingerprint / --cert-subject."""
    if fingerprint is not None and subject is not None:
        raise CommandError("give --cert-fingerprint or --cert-subject, not both")
    try:
        return (
            accounts.normalize_fingerprint(fingerprint) if fingerprint is not None else None,
            accounts.parse_subject(subject) if subject is not None else None,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _describe_binding(fingerprint: str | None, subject: str | None) -> str:
    if fingerprint is not None:
        return f"cert:sha256:{fingerprint}"
    return f"cert:subject:{subject}" if subject is not None else "-"


_cert_fingerprint_option = click.option(
    "--cert-fingerprint",
    metavar="SHA256",
    help="Bind to the client certificate with this SHA-256 fingerprint (hex, colons allowed).",
)
_cert_subject_option = click.option(
    "--cert-subject",
    metavar="DN",
    help="Bind to client certificates with this subject, e.g. 'CN=node-b,O=Partner'.",
)


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--read", "read", multiple=True, metavar="COLLECTION", help="Grant read (id or alias)."
)
@click.option("--write", "write", multiple=True, metavar="COLLECTION", help="Grant write.")
@click.option("--admin", is_flag=True, help="Full rights on every collection.")
@click.option("--peer", metavar="PEER", help="The partner node this sync account belongs to.")
@_cert_fingerprint_option
@_cert_subject_option
@pass_node
def user_add(
    node, name, password_stdin, read, write, admin, peer, cert_fingerprint, cert_subject
) -> None:
    """Create an account; run again with the same name to fail safely.

    With --cert-fingerprint or --cert-subject the account is bound to a client
    certificate (mutual TLS, [server] tls_client_ca): it must present it, and
    presenting it authenticates without a password.

    \b
    Example:
      echo 's3cret-pass' | taxii-node --config config/node-a.toml \\
          user add alice --password-stdin --read shared-indicators --write shared-indicators
      taxii-node --config config/node-a.toml user add node-b --peer node-b \\
          --cert-subject 'CN=node-b,O=Partner' --read shared --write shared
    """
    if peer is not None:
        node.config().peer(peer)
    fingerprint, subject = _certificate_binding(cert_fingerprint, cert_subject)
    password = _read_password(password_stdin)
    with node.writing() as connection:
        readable = _collection_ids(connection, read)
        writable = _collection_ids(connection, write)
        try:
            accounts.add_user(connection, name, password, is_admin=admin, peer=peer)
            if fingerprint is not None or subject is not None:
                accounts.bind_certificate(
                    connection, name, fingerprint=fingerprint, subject=subject
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        role = "admin" if admin else (f"peer {peer}" if peer else "analyst")
        admin_audit(connection, "user-added", name, f"role {role}; read {list(read)}; "
                    f"write {list(write)}")  # fmt: skip
        if fingerprint is not None or subject is not None:
            admin_audit(
                connection, "certificate-bound", name, _describe_binding(fingerprint, subject)
            )
        _grant_all(connection, name, readable, writable)
    click.echo(f"user {name} added")


@user.command("grant")
@click.argument("name")
@click.option("--read", "read", multiple=True, metavar="COLLECTION")
@click.option("--write", "write", multiple=True, metavar="COLLECTION")
@pass_node
def user_grant(node, name, read, write) -> None:
    """Add read/write rights on collections to an existing account.

    \b
    Example:
      taxii-node --config config/node-a.toml user grant alice --read partner-feed
    """
    with node.writing() as connection:
        if accounts.load_account(connection, name) is None:
            raise CommandError(f"no user {name!r}")
        readable = _collection_ids(connection, read)
        writable = _collection_ids(connection, write)
        admin_audit(connection, "rights-granted", name, f"read {list(read)}; write {list(write)}")
        _grant_all(connection, name, readable, writable)
    click.echo(f"user {name} updated")


@user.command("cert")
@click.argument("name")
@_cert_fingerprint_option
@_cert_subject_option
@click.option("--clear", is_flag=True, help="Remove the binding.")
@pass_node
def user_cert(node, name, cert_fingerprint, cert_subject, clear) -> None:
    """Show, set or remove the client certificate an account is bound to.

    A bound account authenticates only over a connection that presented that
    certificate; presenting it authenticates without a password.  A binding
    applies within [server] auth_cache_seconds.  Get a fingerprint with
    'openssl x509 -noout -fingerprint -sha256 -in CERT.pem'.

    \b
    Example:
      taxii-node --config config/node-a.toml user cert node-b \\
          --cert-fingerprint 5F:3A:...:C2
      taxii-node --config config/node-a.toml user cert node-b
    """
    if clear and (cert_fingerprint is not None or cert_subject is not None):
        raise CommandError("give --clear alone")
    fingerprint, subject = _certificate_binding(cert_fingerprint, cert_subject)
    change = clear or fingerprint is not None or subject is not None
    with node.writing() as connection:
        account = accounts.load_account(connection, name)
        if account is None:
            raise CommandError(f"no user {name!r}")
        if not change:
            click.echo(_describe_binding(account.cert_fingerprint, account.cert_subject))
            return
        try:
            accounts.bind_certificate(connection, name, fingerprint=fingerprint, subject=subject)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        description = _describe_binding(fingerprint, subject)
        action = "certificate-unbound" if clear else "certificate-bound"
        admin_audit(connection, action, name, description)
    click.echo(f"user {name}: {description if not clear else 'no certificate binding'}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_node
def user_passwd(node, name, password_stdin) -> None:
    """Set a new password.

    \b
    Example:
      echo 'n3w-passw0rd' | taxii-node --config FILE user passwd alice --password-stdin
    """
    password = _read_password(password_stdin)
    with node.writing() as connection:
        try:
            accounts.set_password(connection, name, password)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        admin_audit(connection, "password-changed", name)
    click.echo(f"password of {name} changed")


@user.command("remove")
@click.argument("name")
@pass_node
def user_remove(node, name) -> None:
    """Delete an account and its rights.

    \b
    Example:
      taxii-node --config config/node-a.toml user remove alice
    """
    with node.writing() as connection:
        try:
            accounts.remove_user(connection, name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        admin_audit(connection, "user-removed", name)
    click.echo(f"user {name} removed")


@user.command("list")
@pass_node
def user_list(node) -> None:
    """List accounts with their role and rights.

    \b
    Example:
      taxii-node --config config/node-a.toml user list
    """
    with node.reading() as connection:
        everyone = accounts.list_accounts(connection)
        names = {c.id: c.alias or c.id for c in catalog.all_collections(connection)}
    for account in everyone:
        role = f"peer:{account.peer}" if account.peer else account.role
        rights = ", ".join(
            f"{names.get(cid, cid)}:{'r' if r.can_read else ''}{'w' if r.can_write else ''}"
            for cid, r in sorted(account.rights.items())
        )
        binding = ""
        if account.certificate_bound:
            binding = "\t" + _describe_binding(account.cert_fingerprint, account.cert_subject)
        click.echo(f"{account.name}\t{role}\t{rights or '-'}{binding}")


@click.command()
@pass_node
def check(node: NodeContext) -> None:
    """Validate the config file, TLS files, collection files and policies; report problems.

    \b
    Example:
      taxii-node --config config/node-a.toml check
    """
    from node.server import check_tls
    from node.sync.client import check_peer_tls

    config = node.config()
    check_tls(config)
    check_peer_tls(config)
    if config.taxii.collections_dir:
        load_collection_files(config.taxii.collections_dir)
    for peer in config.peers:
        for mapping in peer.mappings:
            _check_policies(mapping)
    for warning in _deployment_warnings(node, config):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{config.path}: ok ({len(config.peers)} peer(s))")


def _deployment_warnings(node: NodeContext, config) -> list[str]:
    """What is not wrong in the file but will fail at run time: secrets the worker
    cannot read, and (when the store exists) mappings and peer accounts that do not
    match it.  Errors that make the mappings unusable are raised, not warned."""
    from node.config import ConfigError
    from node.sharing import Agreements

    warnings = []
    for peer in config.peers:
        try:
            peer.password()
        except ConfigError as exc:
            warnings.append(f"{exc} (the sync worker needs it)")
    url = make_url(config.store_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return [*warnings, "the store does not exist yet: run init"]  # check creates nothing
    store = node.store()
    try:
        if not store.is_current():
            return [*warnings, "the store is not initialised yet: run init"]
        Agreements(config, store)  # local collections exist, one mapping per collection
        with store.read() as connection:
            for peer in config.peers:
                account = accounts.load_account(connection, peer.account) if peer.account else None
                if peer.account and (account is None or account.peer != peer.name):
                    warnings.append(
                        f"peer {peer.name!r}: account {peer.account!r} is not a sync account "
                        f"of this peer (user add {peer.account} --peer {peer.name} ...)"
                    )
    finally:
        store.close()
    return warnings


def _check_policies(mapping) -> None:
    from node.policy import Rules

    Rules.from_config(mapping.egress, direction="egress", where=f"{mapping.where}.egress")
    Rules.from_config(mapping.ingress, direction="ingress", where=f"{mapping.where}.ingress")
