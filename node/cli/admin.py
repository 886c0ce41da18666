"""Operator commands: init, serve, user, check.

They parse and print; the work is in ``node.operations``.
"""

from __future__ import annotations

import errno
import json
import socket
import sys

import click

from .common import CommandError, NodeContext, cli_actor, warn

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
    from node.operations.nodes import initialise

    store = node.store()
    try:
        for line in initialise(node.config(), store):
            click.echo(line)
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
    _check_port_free(server.host, server.port, config.path)
    host = f"[{server.host}]" if ":" in server.host else server.host
    click.echo(f"serving {config.name} on {server.scheme}://{host}:{server.port}/")
    run_server(config)


def _check_port_free(host: str, port: int, config_path) -> None:
    """Refuse at once, in one line, when something listens on the port already
    (gunicorn would retry five times and print a line each time)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"{host}:{port} is in use by another program (a node already serving?); "
                    f"stop it or change [server] port in {config_path}"
                ) from None
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.group()
def user() -> None:
    """Manage accounts: add, list, grant, role, cert, passwd, unlock, remove.

    \b
    Example:
      echo 's3cret-pass' | taxii-node --config config/node-a.toml \\
          user add alice --password-stdin --read shared
      taxii-node --config config/node-a.toml user list
    """


def _read_password(password_stdin: bool) -> str:
    from node.operations.accounts import check_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return check_password(password)


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
    from node.operations import accounts as operations

    # Before the password is asked for: nothing to type for an account refused anyway.
    operations.check_account_name(name)
    if admin and peer is not None:
        raise CommandError(
            "--admin and --peer exclude each other: a partner's sync account that is an "
            "admin would read every collection; grant it the mapped ones (--read, --write)"
        )
    peers = {p.name for p in node.config().peers}
    if peer is not None and peer not in peers:
        node.config().peer(peer)  # the config's own error, naming the file
    new = operations.NewAccount(
        name=name,
        password=_read_password(password_stdin),
        is_admin=admin,
        peer=peer,
        read=read,
        write=write,
        certificate=operations.CertificateBinding.parse(cert_fingerprint, cert_subject),
    )
    with node.writing() as connection:
        operations.add_account(connection, new, actor=cli_actor(), known_peers=peers)
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
    from node.operations import accounts as operations

    with node.writing() as connection:
        operations.grant(connection, name, read=read, write=write, actor=cli_actor())
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
    from node.operations import accounts as operations

    if clear and (cert_fingerprint is not None or cert_subject is not None):
        raise CommandError("give --clear alone")
    binding = operations.CertificateBinding.parse(cert_fingerprint, cert_subject)
    with node.writing() as connection:
        account = operations.get_account(connection, name)
        if not clear and not binding.bound:
            click.echo(operations.certificate_of(account).describe())
            return
        operations.bind_certificate(connection, name, binding, actor=cli_actor())
    click.echo(f"user {name}: {binding.describe() if binding.bound else 'no certificate binding'}")


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
    from node.operations import accounts as operations

    password = _read_password(password_stdin)
    with node.writing() as connection:
        operations.set_password(connection, name, password, actor=cli_actor())
    click.echo(f"password of {name} changed")


@user.command("unlock")
@click.argument("name")
@pass_node
def user_unlock(node, name) -> None:
    """Lift the block after too many failed logins (429), from every address.

    After 5 failed logins in 5 minutes from one address, an account (and its
    tokens) is refused from that address for 5 minutes, even with the right
    password.  Unlocking is audited.

    \b
    Example:
      taxii-node --config config/node-a.toml user unlock alice
    """
    from node.operations import accounts as operations

    with node.writing() as connection:
        forgotten = operations.unlock(connection, name, actor=cli_actor())
    click.echo(f"user {name} unlocked ({forgotten} recent failed login(s) forgotten)")


@user.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["releaser"]))
@click.option("--remove", is_flag=True, help="Take the role away.")
@pass_node
def user_role(node, name, role, remove) -> None:
    """Give an account a role (or take it away with --remove): releaser approves or
    rejects what waits in a peer's release queue (egress release = "approval").

    \b
    Example:
      taxii-node --config config/node-a.toml user role carol releaser
    """
    from node.operations import accounts as operations

    with node.writing() as connection:
        changed = operations.set_role(connection, name, role, granted=not remove, actor=cli_actor())
    done = (
        ("removed from" if remove else "given to")
        if changed
        else ("not held by" if remove else "already held by")
    )
    click.echo(f"role {role} {done} {name}")


@user.command("remove")
@click.argument("name")
@pass_node
def user_remove(node, name) -> None:
    """Delete an account and its rights.

    \b
    Example:
      taxii-node --config config/node-a.toml user remove alice
    """
    from node.operations import accounts as operations

    with node.writing() as connection:
        operations.remove_account(connection, name, actor=cli_actor())
    click.echo(f"user {name} removed")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account, a list.")
@pass_node
def user_list(node, as_json) -> None:
    """List accounts with their role, rights and certificate binding.

    \b
    Example:
      taxii-node --config config/node-a.toml user list
      taxii-node --config config/node-a.toml user list --json
    """
    from node.operations import accounts as operations

    with node.reading() as connection:
        views = operations.list_accounts(connection)
    if as_json:
        click.echo(json.dumps([view.as_dict() for view in views], indent=2))
        return
    for view in views:
        rights = ", ".join(f"{alias}:{mode}" for alias, mode in view.rights.items())
        binding = f"\t{view.certificate}" if view.certificate else ""
        click.echo(f"{view.name}\t{view.role}\t{rights or '-'}{binding}")


@click.command()
@pass_node
def check(node: NodeContext) -> None:
    """Validate the config file, TLS files, collection files and policies; report problems.

    \b
    Example:
      taxii-node --config config/node-a.toml check
    """
    from node.client import check_peer_tls
    from node.collection_files import load_collection_files
    from node.operations.nodes import deployment_warnings
    from node.server import check_tls

    config = node.config()
    check_tls(config)
    check_peer_tls(config)
    if config.taxii.collections_dir:
        _check_against_the_store(node, load_collection_files(config.taxii.collections_dir))
    for peer in config.peers:
        for mapping in peer.mappings:
            _check_policies(mapping)
    for warning in deployment_warnings(config):
        warn(warning)
    click.echo(f"{config.path}: ok ({len(config.peers)} peer(s))")


def _check_against_the_store(node: NodeContext, definitions) -> None:
    """What ``init`` would refuse of the collection files for the store as it is: an
    alias another collection holds there (``catalog.check_names_free``).  A store
    that does not exist yet, or is not migrated, holds none; check creates nothing."""
    from node.store import catalog
    from node.store.engine import missing_sqlite_file

    if missing_sqlite_file(node.config().store_url) is not None:
        return
    store = node.store()
    try:
        if not store.is_current():
            return
        with store.read() as connection:
            for collection in definitions:
                catalog.check_names_free(connection, collection)
    finally:
        store.close()


def _check_policies(mapping) -> None:
    from node.policy import Rules

    Rules.from_config(mapping.egress, direction="egress", where=f"{mapping.where}.egress")
    Rules.from_config(mapping.ingress, direction="ingress", where=f"{mapping.where}.ingress")
