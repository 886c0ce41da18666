"""The node's TOML configuration, validated into frozen dataclasses.

Every error names the file and the key (``config/node-a.toml: [server] port:
expected an integer``) and suggests the closest valid key for a misspelling,
because a sharing node that starts with a silently ignored setting is worse
than one that refuses to start.  Relative paths are resolved against the
directory of the config file, so a config works from any working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from node.errors import ConfigError
from node.tomlreader import first_unknown_key

ENV_STORE_URL = "TAXII_NODE_STORE_URL"
# The most versions a peer's ``batch`` may name: a push batch is decided and held in
# memory at once (envelopes are split further by size, ``node.client``).
MAX_PEER_BATCH = 10_000

__all__ = ["ENV_STORE_URL", "Config", "ConfigError", "PeerConfig", "load_config"]


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 6001
    workers: int = 2
    threads: int = 8
    timeout: int = 60
    # Seconds within which a client must send a whole request, headers and body,
    # however steadily it trickles (timeout bounds each wait for more bytes).
    request_timeout: int = 300
    auth_cache_seconds: int = 30
    tls_cert: Path | None = None  # PEM certificate (chain) served to clients
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # CA bundle for client certificates (mutual TLS)
    insecure_http: bool = False  # serve plain HTTP: loopback only
    console_idle_minutes: int = 30  # a console session ends after this long unused
    metrics_token_file: Path | None = None  # Bearer token a Prometheus scraper presents
    metrics_loopback: bool = False  # /metrics open to loopback clients without credentials

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


@dataclass(frozen=True)
class TaxiiConfig:
    api_root: str = "api"
    title: str = "taxii-node"
    description: str = ""
    contact: str = ""
    max_content_length: int = 10 * 1024 * 1024
    max_page_size: int = 1000
    status_retention_hours: int = 48
    max_objects_per_envelope: int = 10_000
    collections_dir: Path | None = None


class Flow(StrEnum):
    """Which way objects cross a mapping: a mapping's ``direction`` (whoever
    connects: our worker, or the partner's through its sync account here) and
    its ``worker`` (which of those our own worker carries)."""

    PUSH = "push"  # from this node to the peer
    PULL = "pull"  # from the peer to this node
    BOTH = "both"
    NONE = "none"  # only for ``worker``: the partner's worker carries everything

    @property
    def sends(self) -> bool:
        return self in (Flow.PUSH, Flow.BOTH)

    @property
    def fetches(self) -> bool:
        return self in (Flow.PULL, Flow.BOTH)

    def within(self, other: Flow) -> bool:
        """Whether everything this moves, ``other`` lets cross."""
        return (other.sends or not self.sends) and (other.fetches or not self.fetches)


@dataclass(frozen=True)
class MappingConfig:
    local: str
    remote: str
    direction: Flow = Flow.BOTH  # which way objects may cross
    worker: Flow | None = None  # what our worker moves (None: as ``direction``)
    interval: float = 5.0
    egress: Mapping[str, Any] = field(default_factory=dict)
    ingress: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""

    @property
    def pushes(self) -> bool:
        return self.direction.sends

    @property
    def pulls(self) -> bool:
        return self.direction.fetches

    @property
    def worker_moves(self) -> Flow:
        """What our sync worker does for this mapping: push, pull, both or none.

        ``direction`` says which way objects may cross, whoever connects (our
        worker, or the partner's through its sync account here); ``worker``
        which of those our worker carries, so that each object crosses once
        when the partner's worker carries the other (README: Topologies).
        """
        return self.worker or self.direction

    @property
    def worker_pushes(self) -> bool:
        return self.worker_moves.sends

    @property
    def worker_pulls(self) -> bool:
        return self.worker_moves.fetches

    @property
    def key(self) -> str:
        return f"{self.local}<->{self.remote}"


@dataclass(frozen=True)
class PeerConfig:
    name: str
    api_root: str
    user: str
    password_env: str | None = None
    password_file: Path | None = None
    account: str | None = None  # local account the partner's worker reads us with
    timeout: float = 30.0
    # Versions decided per push envelope, and the ``limit`` asked per pull page: a
    # slow peer (a server that takes seconds per 100 objects) may need fewer.
    batch: int = 1000
    ca_bundle: Path | None = None  # CA(s) the peer's server certificate must chain to
    client_cert: Path | None = None  # our client certificate for mutual TLS (PEM)
    client_key: Path | None = None  # its key, unless client_cert holds both
    mappings: tuple[MappingConfig, ...] = ()

    def password(self) -> str:
        """The secret this node presents to the peer, from the environment or a file."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"peer {self.name!r}: environment variable {self.password_env} is not set"
                )
            return value
        if self.password_file:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"peer {self.name!r}: cannot read password_file: {exc}") from None
        raise ConfigError(f"peer {self.name!r}: set password_env or password_file")


@dataclass(frozen=True)
class Config:
    path: Path
    name: str
    store_url: str
    server: ServerConfig = field(default_factory=ServerConfig)
    taxii: TaxiiConfig = field(default_factory=TaxiiConfig)
    peers: tuple[PeerConfig, ...] = ()

    def peer(self, name: str) -> PeerConfig:
        for peer in self.peers:
            if peer.name == name:
                return peer
        known = ", ".join(p.name for p in self.peers) or "none configured"
        raise ConfigError(f"{self.path}: no peer named {name!r} (peers: {known})")


_TOP_KEYS = {"node", "server", "store", "taxii", "peers"}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a node config file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; name the node's config file (TOML)") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the config file (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 (TOML 1.0, "Spec"); tomllib lets a decode error escape.
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}): save the config file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    """Validate an already-parsed config; ``path`` anchors relative paths."""
    reader = _Reader(path)
    reader.check_keys(data, _TOP_KEYS, "")
    node = reader.table(data, "node")
    reader.check_keys(node, {"name"}, "[node]")
    server = reader.table(data, "server")
    taxii = reader.table(data, "taxii")
    store = reader.table(data, "store")
    name = reader.string(node, "name", "[node]", required=True)
    return Config(
        path=path,
        name=name,
        store_url=_store_url(reader, store, name),
        server=_server(reader, server),
        taxii=_taxii(reader, taxii),
        peers=tuple(_peers(reader, data.get("peers", []))),
    )


def _server(reader: _Reader, table: Mapping[str, Any]) -> ServerConfig:
    where = "[server]"
    keys = {"host", "port", "workers", "threads", "timeout", "request_timeout"}
    keys |= {"auth_cache_seconds"}
    keys |= {"tls_cert", "tls_key", "tls_client_ca", "insecure_http"}
    keys |= {"console_idle_minutes", "metrics_token_file", "metrics_loopback"}
    reader.check_keys(table, keys, where)
    defaults = ServerConfig()
    host = reader.string(table, "host", where, default=defaults.host)
    tls_cert, tls_key, tls_client_ca = (
        reader.path_or_none(table, key, where) for key in ("tls_cert", "tls_key", "tls_client_ca")
    )
    insecure_http = reader.boolean(table, "insecure_http", where, default=False)
    if tls_cert is None and (tls_key is not None or tls_client_ca is not None):
        raise ConfigError(f"{reader.path}: {where} tls_key and tls_client_ca need tls_cert")
    if tls_cert is not None and insecure_http:
        raise ConfigError(
            f"{reader.path}: {where} insecure_http: remove it, or remove tls_cert to serve "
            "plain HTTP (not both)"
        )
    if tls_cert is None and not insecure_http:
        raise ConfigError(
            f"{reader.path}: {where} set tls_cert and tls_key to serve HTTPS; to serve plain "
            "HTTP on a loopback address instead, set insecure_http = true"
        )
    if insecure_http and not is_loopback(host):
        raise ConfigError(
            f"{reader.path}: {where} insecure_http: plain HTTP is served only on a loopback "
            f"address (127.0.0.0/8, ::1, localhost), not on host {host!r}; set tls_cert and "
            "tls_key"
        )
    return ServerConfig(
        host=host,
        port=reader.integer(table, "port", where, defaults.port, low=1, high=65535),
        workers=reader.integer(table, "workers", where, defaults.workers, low=1, high=64),
        threads=reader.integer(table, "threads", where, defaults.threads, low=1, high=256),
        timeout=reader.integer(table, "timeout", where, defaults.timeout, low=1, high=3600),
        request_timeout=reader.integer(
            table, "request_timeout", where, defaults.request_timeout, low=1, high=86400
        ),
        auth_cache_seconds=reader.integer(
            table, "auth_cache_seconds", where, defaults.auth_cache_seconds, low=0, high=3600
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        insecure_http=insecure_http,
        console_idle_minutes=reader.integer(
            table, "console_idle_minutes", where, defaults.console_idle_minutes, low=1, high=1440
        ),
        metrics_token_file=reader.path_or_none(table, "metrics_token_file", where),
        metrics_loopback=reader.boolean(table, "metrics_loopback", where, default=False),
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any address in 127.0.0.0/8 or ::1."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _taxii(reader: _Reader, table: Mapping[str, Any]) -> TaxiiConfig:
    where = "[taxii]"
    keys = {
        "api_root",
        "title",
        "description",
        "contact",
        "max_content_length",
        "max_page_size",
        "status_retention_hours",
        "max_objects_per_envelope",
        "collections_dir",
    }
    reader.check_keys(table, keys, where)
    defaults = TaxiiConfig()
    api_root = reader.string(table, "api_root", where, default=defaults.api_root).strip("/")
    if not api_root or "/" in api_root or api_root == "taxii2":
        raise ConfigError(
            f"{reader.path}: {where} api_root: {api_root!r} must be one path segment "
            "other than 'taxii2' (the discovery endpoint)"
        )
    collections_dir = reader.string(table, "collections_dir", where, default="")
    return TaxiiConfig(
        api_root=api_root,
        title=reader.string(table, "title", where, default=defaults.title),
        description=reader.string(table, "description", where, default=""),
        contact=reader.string(table, "contact", where, default=""),
        max_content_length=reader.integer(
            table, "max_content_length", where, defaults.max_content_length, low=1024
        ),
        max_page_size=reader.integer(
            table, "max_page_size", where, defaults.max_page_size, low=1, high=100_000
        ),
        status_retention_hours=reader.integer(
            table, "status_retention_hours", where, defaults.status_retention_hours, low=24
        ),
        max_objects_per_envelope=reader.integer(
            table, "max_objects_per_envelope", where, defaults.max_objects_per_envelope, low=1
        ),
        collections_dir=reader.resolve(collections_dir) if collections_dir else None,
    )


def _store_url(reader: _Reader, table: Mapping[str, Any], node_name: str) -> str:
    reader.check_keys(table, {"url", "path"}, "[store]")
    from_env = os.environ.get(ENV_STORE_URL)
    if from_env:
        return _checked_store_url(from_env, f"environment variable {ENV_STORE_URL}")
    if "url" in table and "path" in table:
        raise ConfigError(f"{reader.path}: [store] set either url or path, not both")
    if "url" in table:
        url = reader.string(table, "url", "[store]")
        return _checked_store_url(url, f"{reader.path}: [store] url")
    path = reader.string(table, "path", "[store]", default=_default_store_path(reader, node_name))
    return f"sqlite:///{reader.resolve(path)}"


def _default_store_path(reader: _Reader, node_name: str) -> str:
    """``../var/NAME/node.db``: named for the node, so that two configs in one folder
    never share a store by accident."""
    if not _PLAIN_NAME.fullmatch(node_name):
        raise ConfigError(
            f"{reader.path}: [store] path: required, because [node] name {node_name!r} is "
            "not a plain file name to derive the default (../var/NAME/node.db) from"
        )
    return f"../var/{node_name}/node.db"


def _checked_store_url(url: str, where: str) -> str:
    scheme = url.partition(":")[0].partition("+")[0].lower()
    if scheme == "sqlite" and url.partition("://")[2].lstrip("/") not in ("", ":memory:"):
        return url
    if scheme in ("postgresql", "postgres"):
        return url
    raise ConfigError(
        f"{where}: {url!r} is not a store URL: use sqlite:///PATH (a file) or "
        "postgresql://user@host/db"
    )


def _peers(reader: _Reader, peers: Any) -> list[PeerConfig]:
    if not isinstance(peers, list):
        raise ConfigError(f"{reader.path}: peers must be an array of tables ([[peers]])")
    result = []
    names = set()
    for index, table in enumerate(peers):
        where = f"[[peers]] #{index + 1}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{reader.path}: {where} must be a table")
        peer = _peer(reader, table, where)
        if peer.name in names:
            raise ConfigError(f"{reader.path}: {where}: duplicate peer name {peer.name!r}")
        names.add(peer.name)
        result.append(peer)
    return result


def _peer(reader: _Reader, table: Mapping[str, Any], where: str) -> PeerConfig:
    keys = {"name", "api_root", "user", "password_env", "password_file", "account", "timeout"}
    keys |= {"batch", "ca_bundle", "client_cert", "client_key"}
    reader.check_keys(table, keys | {"mappings"}, where)
    name = reader.string(table, "name", where, required=True)
    where = f"peer {name!r}"
    api_root = reader.string(table, "api_root", where, required=True)
    if not api_root.startswith(("http://", "https://")):
        raise ConfigError(f"{reader.path}: {where} api_root: {api_root!r} is not an http(s) URL")
    password_file = reader.string(table, "password_file", where, default="")
    if password_file and table.get("password_env"):
        raise ConfigError(
            f"{reader.path}: {where} set either password_file or password_env, not both"
        )
    client_cert = reader.path_or_none(table, "client_cert", where)
    client_key = reader.path_or_none(table, "client_key", where)
    ca_bundle = reader.path_or_none(table, "ca_bundle", where)
    if client_key is not None and client_cert is None:
        raise ConfigError(f"{reader.path}: {where} client_key needs client_cert")
    if api_root.startswith("http://") and (ca_bundle or client_cert):
        raise ConfigError(
            f"{reader.path}: {where} ca_bundle and client_cert need an https:// api_root"
        )
    mappings = table.get("mappings", [])
    if not isinstance(mappings, list):
        raise ConfigError(f"{reader.path}: {where} mappings must be an array of tables")
    return PeerConfig(
        name=name,
        api_root=api_root if api_root.endswith("/") else api_root + "/",
        user=reader.string(table, "user", where, required=True),
        password_env=reader.string(table, "password_env", where, default="") or None,
        password_file=reader.resolve(password_file) if password_file else None,
        account=reader.string(table, "account", where, default="") or None,
        timeout=float(reader.number(table, "timeout", where, 30.0)),
        batch=reader.integer(table, "batch", where, 1000, low=1, high=MAX_PEER_BATCH),
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
        mappings=tuple(
            _mapping(reader, m, f"{where} mappings[{i}]") for i, m in enumerate(mappings)
        ),
    )


def _mapping(reader: _Reader, table: Any, where: str) -> MappingConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{reader.path}: {where} must be a table")
    keys = {"local", "remote", "direction", "worker", "interval", "egress", "ingress"}
    reader.check_keys(table, keys, where)
    direction = _direction(reader, table, where)
    worker = _worker(reader, table, where, direction)
    for policy in ("egress", "ingress"):
        if not isinstance(table.get(policy, {}), Mapping):
            raise ConfigError(f"{reader.path}: {where} {policy} must be a table")
    return MappingConfig(
        local=reader.string(table, "local", where, required=True),
        remote=reader.string(table, "remote", where, required=True),
        direction=direction,
        worker=worker,
        interval=float(reader.number(table, "interval", where, 5.0)),
        egress=dict(table.get("egress", {})),
        ingress=dict(table.get("ingress", {})),
        where=f"{reader.path}: {where}",
    )


def _direction(reader: _Reader, table: Mapping, where: str) -> Flow:
    """The mapping's ``direction`` key: push, pull or both (the default)."""
    direction = reader.string(table, "direction", where, default="both")
    if direction not in (Flow.PUSH, Flow.PULL, Flow.BOTH):
        raise ConfigError(
            f"{reader.path}: {where} direction: {direction!r} is not push, pull or both"
        )
    return Flow(direction)


def _worker(reader: _Reader, table: Mapping, where: str, direction: Flow) -> Flow | None:
    """The mapping's ``worker`` key: what our worker moves, within ``direction``."""
    worker = reader.string(table, "worker", where, default="")
    if not worker:
        return None
    if worker not in tuple(Flow):
        raise ConfigError(
            f"{reader.path}: {where} worker: {worker!r} is not push, pull, both or none"
        )
    if not Flow(worker).within(direction):
        raise ConfigError(
            f"{reader.path}: {where} worker: {worker!r} moves more than direction "
            f"{direction.value!r} lets cross"
        )
    return Flow(worker)


class _Reader:
    """Typed access to TOML tables, with errors that name file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resolve(self, value: str) -> Path:
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            candidate = self.path.resolve().parent / candidate
        return candidate.resolve()

    def check_keys(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        unknown = first_unknown_key(table, allowed)
        if unknown is not None:
            raise ConfigError(
                f"{self.path}: {where + ' ' if where else ''}unknown key {unknown.key!r}"
                f"{unknown.hint}; {unknown.listing}"
            )

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.path}: [{key}] must be a table")
        return value

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        *,
        default: str | None = None,
        required: bool = False,
    ) -> str:
        if key not in table:
            if required or default is None:
                raise ConfigError(f"{self.path}: {where} {key}: required")
            return default
        value = table[key]
        if not isinstance(value, str) or (required and not value.strip()):
            raise ConfigError(f"{self.path}: {where} {key}: expected a non-empty string")
        return value

    def path_or_none(self, table: Mapping[str, Any], key: str, where: str) -> Path | None:
        """An optional path, resolved against the config file's directory."""
        if key not in table:
            return None
        return self.resolve(self.string(table, key, where, required=True))

    def boolean(self, table: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.path}: {where} {key}: expected true or false, got {value!r}")
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        default: int,
        *,
        low: int | None = None,
        high: int | None = None,
    ) -> int:
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{self.path}: {where} {key}: expected an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(
                f"{self.path}: {where} {key}: {value} is outside {low}..{high or 'unbounded'}"
            )
        return value

    def number(self, table: Mapping[str, Any], key: str, where: str, default: float) -> float:
        value = table.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{self.path}: {where} {key}: expected a positive number")
        return value
