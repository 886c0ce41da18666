"""Transport security: HTTPS only (TLS 1.2 or later), mutual TLS between the partners.

Every certificate is made at test time with trustme: the partners' CA issues
both nodes' server and client certificates; a rogue CA issues look-alikes (a
server certificate for 127.0.0.1, client certificates with the partners'
subjects).  The nodes are real gunicorn servers on 127.0.0.1 over https.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme
from sqlalchemy import inspect, text

from node.client import TaxiiClient, check_peer_tls
from node.config import ConfigError, is_loopback, load_config, parse_config
from node.errors import RemoteError
from node.server import MINIMUM_TLS_VERSION, check_tls, tls_settings
from node.store import Store, accounts, schema
from node.sync.worker import SyncWorker
from node.taxii.auth import peer_certificate
from tests.nodes import (
    ADMIN_PASSWORD,
    COLLECTIONS,
    NodeFiles,
    RunningNode,
    cli_in_process,
    free_port,
    taxii_node_command,
)

MEDIA_TYPE = "application/taxii+json;version=2.1"
ADMIN = ("admin", ADMIN_PASSWORD)
# node-a's account at node-b is bound by subject (written in another order than
# the certificate's); node-b's account at node-a by fingerprint.
SUBJECT_A = "CN=node-a,OU=Sync,O=Unit A"
PASSWORDS = {"node-a": "node-a-password-at-b", "node-b": "node-b-password-at-a"}


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    fingerprint: str  # sha256, lowercase hex

    @property
    def pair(self) -> tuple[str, str]:
        """``cert=`` for requests."""
        return (str(self.cert), str(self.key))

    @property
    def openssl_fingerprint(self) -> str:
        """As ``openssl x509 -fingerprint -sha256`` prints it."""
        pairs = [self.fingerprint[i : i + 2].upper() for i in range(0, 64, 2)]
        return "SHA256 Fingerprint=" + ":".join(pairs)


@dataclass(frozen=True)
class Pki:
    partner_ca: Path
    rogue_ca: Path
    certs: dict[str, Cert]


def _write(directory: Path, name: str, leaf: trustme.LeafCert) -> Cert:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return Cert(cert, key, hashlib.sha256(der).hexdigest())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    partner = trustme.CA(organization_name="Partner CA")
    rogue = trustme.CA(organization_name="Rogue CA")
    partner.cert_pem.write_to_path(str(directory / "partner-ca.pem"))
    rogue.cert_pem.write_to_path(str(directory / "rogue-ca.pem"))

    def client(ca: trustme.CA, name: str, organization: str) -> trustme.LeafCert:
        return ca.issue_cert(
            f"{name}.sync.invalid",
            common_name=name,
            organization_name=organization,
            organization_unit_name="Sync",
        )

    leaves = {
        "server-a": partner.issue_cert("127.0.0.1", common_name="node-a server"),
        "server-b": partner.issue_cert("127.0.0.1", common_name="node-b server"),
        "client-a": client(partner, "node-a", "Unit A"),
        "client-b": client(partner, "node-b", "Unit B"),
        # Signed by the right CA, but bound to no account.
        "someone": client(partner, "someone", "Unit B"),
        "rogue-server": rogue.issue_cert("127.0.0.1", common_name="impostor"),
        # The partners' own subjects, from the wrong CA.
        "rogue-client-a": client(rogue, "node-a", "Unit A"),
        "rogue-client-b": client(rogue, "node-b", "Unit B"),
    }
    return Pki(
        partner_ca=directory / "partner-ca.pem",
        rogue_ca=directory / "rogue-ca.pem",
        certs={name: _write(directory, name, leaf) for name, leaf in leaves.items()},
    )


def peer_toml(peer: str, api_root: str, user: str, secret: Path, **tls: Path | None) -> str:
    lines = [
        "[[peers]]",
        f'name = "{peer}"',
        f'api_root = "{api_root}"',
        f'user = "{user}"',
        f"password_file = {json.dumps(str(secret))}",
        f'account = "{peer}"',
        "timeout = 10",
    ]
    lines += [f"{key} = {json.dumps(str(value))}" for key, value in tls.items() if value]
    lines += [
        "",
        "[[peers.mappings]]",
        'local = "alpha"',
        'remote = "alpha"',
        'direction = "both"',
        "",
        "[peers.mappings.egress]",
        'unmarked = "share"',
    ]
    return "\n".join(lines) + "\n"


def https_node(directory: Path, name: str, port: int, server: Cert, ca: Path, **kw) -> RunningNode:
    """An initialised HTTPS node asking for client certificates of the partners' CA."""
    node = RunningNode(
        directory=directory / name,
        name=name,
        store_url=f"sqlite:///{directory / name / 'node.db'}",
        port=port,
        tls_cert=server.cert,
        tls_key=server.key,
        tls_client_ca=ca,
        ca_bundle=ca,
        **kw,
    )
    node.init()
    node.add_user("admin", ADMIN_PASSWORD, admin=True)
    return node


@dataclass
class Pair:
    a: RunningNode
    b: RunningNode
    secrets: Path


@pytest.fixture(scope="module")
def pair(pki: Pki, tmp_path_factory) -> Iterator[Pair]:
    """node-a and node-b over https, each with a [[peers]] entry for the other
    presenting its client certificate and trusting only the partners' CA."""
    directory = tmp_path_factory.mktemp("tls-pair")
    secrets = directory / "secrets"
    secrets.mkdir()
    ports = {"node-a": free_port(), "node-b": free_port()}
    nodes = {}
    for name, other in (("node-a", "node-b"), ("node-b", "node-a")):
        secret = secrets / f"{name}-at-{other}"
        secret.write_text(PASSWORDS[name])
        letter = name[-1]
        extra = peer_toml(
            other,
            f"https://127.0.0.1:{ports[other]}/api/",
            name,
            secret,
            ca_bundle=pki.partner_ca,
            client_cert=pki.certs[f"client-{letter}"].cert,
            client_key=pki.certs[f"client-{letter}"].key,
        )
        nodes[name] = https_node(
            directory,
            name,
            ports[name],
            pki.certs[f"server-{letter}"],
            pki.partner_ca,
            extra_toml=extra,
            server_toml="auth_cache_seconds = 0",
        )
    a, b = nodes["node-a"], nodes["node-b"]
    a.add_user(
        "node-b",
        PASSWORDS["node-b"],
        read=("alpha",),
        write=("alpha",),
        peer="node-b",
        cert_fingerprint=pki.certs["client-b"].openssl_fingerprint,
    )
    b.add_user(
        "node-a",
        PASSWORDS["node-a"],
        read=("alpha",),
        write=("alpha",),
        peer="node-a",
        cert_subject=SUBJECT_A,
    )
    try:
        a.start()
        b.start()
        yield Pair(a, b, secrets)
    finally:
        a.stop()
        b.stop()


# -- helpers ---------------------------------------------------------------------


def indicator(label: str) -> dict:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-03-01T00:00:00.000Z",
        "modified": "2026-03-01T00:00:00.000Z",
        "name": label,
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": "2026-03-01T00:00:00Z",
    }


def publish(node: RunningNode, obj: dict) -> None:
    response = requests.post(
        node.collection_url("alpha") + "objects/",
        json={"objects": [obj]},
        auth=ADMIN,
        headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE},
        verify=node.verify,
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["success_count"] == 1


def ids_at(node: RunningNode) -> set[str]:
    response = requests.get(
        node.collection_url("alpha") + "objects/",
        params={"limit": 1000},
        auth=ADMIN,
        headers={"Accept": MEDIA_TYPE},
        verify=node.verify,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return {obj["id"] for obj in response.json().get("objects", [])}


def run_worker(config_path: Path):
    config = load_config(config_path)
    store = Store(config.store_url)
    worker = SyncWorker(config, store, retries=1)
    try:
        return worker.run_once()
    finally:
        worker.close()
        store.close()


def variant(node: RunningNode, name: str, edit) -> Path:
    """A copy of ``node``'s config (same store) changed by ``edit(text) -> text``."""
    path = node.directory / f"{name}.toml"
    path.write_text(edit(node.config_path.read_text()))
    return path


def get(
    node: RunningNode, path: str = "/api/collections/", headers: dict | None = None, **kwargs
) -> requests.Response:
    kwargs.setdefault("verify", node.verify)
    headers = {"Accept": MEDIA_TYPE, **(headers or {})}
    return requests.get(node.base_url + path, headers=headers, timeout=10, **kwargs)


# -- TLS versions ------------------------------------------------------------------


def _handshake(port: int, ca: Path, maximum: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1_1
        # Let this client really offer TLS 1.0 and 1.1 (OpenSSL 3 disables them at
        # its default security level), so that refusing them is the server's doing.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version() or ""


def test_server_refuses_tls_1_1_and_below(pair: Pair, pki: Pki) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match=r"(?i)protocol.version"):
        _handshake(pair.a.port, pki.partner_ca, old)
    # The same client, allowed TLS 1.2, gets through: the refusal was the version.
    assert _handshake(pair.a.port, pki.partner_ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(pair.a.port, pki.partner_ca, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_https_only_and_the_server_context(pair: Pair, pki: Pki) -> None:
    # Plain HTTP on the HTTPS port gets no answer.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{pair.a.port}/taxii2/", timeout=10)
    # A client that trusts only its system CAs refuses the partners' private CA.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{pair.a.base_url}/taxii2/", timeout=10)

    config = load_config(pair.a.config_path)
    context = check_tls(config)
    assert context is not None
    assert context.minimum_version == MINIMUM_TLS_VERSION == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    settings = tls_settings(config.server)
    assert settings["cert_reqs"] == ssl.CERT_OPTIONAL
    assert settings["ca_certs"] == str(pki.partner_ca)
    # The gunicorn hook raises the floor whatever the default context allows.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
    hardened = settings["ssl_context"](None, lambda: permissive)
    assert hardened.minimum_version == ssl.TLSVersion.TLSv1_2


# -- mutual TLS between the partners -------------------------------------------------


def test_peers_sync_both_ways_over_mutual_tls(pair: Pair) -> None:
    from_a, from_b = indicator("from node-a"), indicator("from node-b")
    publish(pair.a, from_a)
    publish(pair.b, from_b)

    # node-a's worker: pushes to and pulls from node-b as "node-a" (subject-bound).
    results = run_worker(pair.a.config_path)
    assert {(r.direction, r.error) for r in results} == {("push", None), ("pull", None)}
    assert from_a["id"] in ids_at(pair.b)
    assert from_b["id"] in ids_at(pair.a)
    pushed = next(r for r in results if r.direction == "push")
    pulled = next(r for r in results if r.direction == "pull")
    assert pushed.sent >= 1 and pulled.received >= 1

    # node-b's worker uses "node-b" at node-a (fingerprint-bound).
    later = indicator("later from node-b")
    publish(pair.b, later)
    results = run_worker(pair.b.config_path)
    assert all(r.ok for r in results), [r.error for r in results]
    assert later["id"] in ids_at(pair.a)


def test_a_cert_bound_account_needs_its_certificate(pair: Pair, pki: Pki) -> None:
    certs = pki.certs
    password = ("node-b", PASSWORDS["node-b"])
    # The right password alone, or with another certificate of the right CA: 401,
    # the same answer as a wrong password.
    wrong_password = get(pair.a, auth=("node-b", "not-the-password"))
    no_cert = get(pair.a, auth=password)
    other_cert = get(pair.a, auth=password, cert=certs["someone"].pair)
    assert wrong_password.status_code == no_cert.status_code == other_cert.status_code == 401
    assert no_cert.json() == wrong_password.json()
    # A certificate with node-b's subject from another CA fails the TLS handshake.
    with pytest.raises(requests.ConnectionError):
        get(pair.a, auth=password, cert=certs["rogue-client-b"].pair)
    with pytest.raises(requests.ConnectionError):
        get(pair.a, cert=certs["rogue-client-b"].pair)
    # The certificate does not stand in for a wrong password.
    wrong = get(pair.a, auth=("node-b", "not-the-password"), cert=certs["client-b"].pair)
    assert wrong.status_code == 401

    # Password and certificate: in.
    both = get(pair.a, auth=password, cert=certs["client-b"].pair)
    assert both.status_code == 200, both.text
    # The bound certificate alone authenticates as node-b, a peer account that
    # sees only its mapped collection.
    alone = get(pair.a, cert=certs["client-b"].pair)
    assert alone.status_code == 200, alone.text
    assert [c["id"] for c in alone.json()["collections"]] == [COLLECTIONS["alpha"]]
    # A valid certificate bound to no account does not authenticate.
    assert get(pair.a, cert=certs["someone"].pair).status_code == 401
    # Unbound accounts are unaffected by certificates, presented or not.
    assert get(pair.a, auth=ADMIN).status_code == 200
    assert get(pair.a, auth=ADMIN, cert=certs["someone"].pair).status_code == 200


def test_a_subject_bound_account_needs_a_certificate_with_that_subject(
    pair: Pair, pki: Pki
) -> None:
    certs = pki.certs
    password = ("node-a", PASSWORDS["node-a"])
    assert get(pair.b, auth=password).status_code == 401
    assert get(pair.b, auth=password, cert=certs["client-b"].pair).status_code == 401
    with pytest.raises(requests.ConnectionError):
        get(pair.b, auth=password, cert=certs["rogue-client-a"].pair)
    assert get(pair.b, auth=password, cert=certs["client-a"].pair).status_code == 200
    assert get(pair.b, cert=certs["client-a"].pair).status_code == 200
    # A token of a bound account needs the certificate as well.  (At most five
    # failed logins per account and address: 5 minutes of 429 after that.)
    token = pair.b.cli("token", "create", "node-a").stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    assert get(pair.b, headers=bearer).status_code == 401
    assert get(pair.b, headers=bearer, cert=certs["client-a"].pair).status_code == 200


def test_worker_without_its_client_certificate_is_refused(pair: Pair) -> None:
    def drop_client_cert(config: str) -> str:
        return "\n".join(
            line
            for line in config.splitlines()
            if not line.startswith(("client_cert", "client_key"))
        )

    config = variant(pair.a, "no-client-cert", drop_client_cert)
    assert load_config(config).peers[0].client_cert is None
    obj = indicator("never leaves without the certificate")
    publish(pair.a, obj)
    results = run_worker(config)
    assert results and all(not r.ok for r in results)
    assert all("401" in (r.error or "") for r in results), [r.error for r in results]
    assert obj["id"] not in ids_at(pair.b)


def test_worker_refuses_a_server_certificate_from_another_ca(
    pair: Pair, pki: Pki, tmp_path: Path
) -> None:
    # An impostor at another address with a certificate for 127.0.0.1 from the
    # rogue CA, and an account that would accept node-a's worker.
    impostor = https_node(
        tmp_path, "impostor", free_port(), pki.certs["rogue-server"], pki.partner_ca
    )
    impostor.ca_bundle = pki.rogue_ca
    impostor.add_user("node-a", PASSWORDS["node-a"], read=("alpha",), write=("alpha",))
    impostor.start()
    try:
        config = variant(
            pair.a,
            "impostor",
            lambda text: text.replace(pair.b.api_root, impostor.api_root),
        )
        assert load_config(config).peers[0].api_root == impostor.api_root
        obj = indicator("must not reach the impostor")
        publish(pair.a, obj)
        results = run_worker(config)
        assert results and all(not r.ok for r in results)
        assert all("CERTIFICATE_VERIFY_FAILED" in (r.error or "") for r in results)
        # Not one request reached the impostor's application: its access log has
        # only the harness's start-up polls of /taxii2/.
        assert impostor.log_path is not None
        requests_seen = [
            line
            for line in impostor.log_path.read_text().splitlines()
            if any(f'"{method} ' in line for method in ("GET", "POST", "PUT", "DELETE"))
        ]
        assert requests_seen and all('"GET /taxii2/ ' in line for line in requests_seen)
        assert ids_at(impostor) == set()
    finally:
        impostor.stop()


# -- configuration ------------------------------------------------------------------


def _config(**server) -> dict:
    return {"node": {"name": "x"}, "server": server}


def test_plain_http_needs_insecure_http_and_a_loopback_host(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    with pytest.raises(ConfigError, match="insecure_http = true") as missing:
        parse_config(_config(), path)
    assert "tls_cert" in str(missing.value) and str(path) in str(missing.value)
    for host in ("0.0.0.0", "192.0.2.10", "::", "node.example.org"):
        with pytest.raises(ConfigError, match="loopback"):
            parse_config(_config(host=host, insecure_http=True), path)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert parse_config(_config(host=host, insecure_http=True), path).server.insecure_http
    assert is_loopback("[::1]") and not is_loopback("10.0.0.1")
    with pytest.raises(ConfigError, match="expected true or false"):
        parse_config(_config(insecure_http="yes"), path)


def test_tls_keys_are_paths_relative_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "node.toml"
    config = parse_config(
        _config(
            host="0.0.0.0",
            tls_cert="tls/node.pem",
            tls_key="tls/node.key",
            tls_client_ca="/srv/ca.pem",
        ),
        path,
    )
    server = config.server
    assert server.scheme == "https"
    assert server.tls_cert == (tmp_path / "etc" / "tls" / "node.pem").resolve()
    assert server.tls_key == (tmp_path / "etc" / "tls" / "node.key").resolve()
    assert server.tls_client_ca == Path("/srv/ca.pem")
    with pytest.raises(ConfigError, match="not both"):
        parse_config(_config(tls_cert="a.pem", insecure_http=True), path)
    with pytest.raises(ConfigError, match="need tls_cert"):
        parse_config(_config(tls_client_ca="ca.pem", insecure_http=True), path)

    peer = {"name": "p", "api_root": "https://198.51.100.1/api/", "user": "u"}
    peer |= {"ca_bundle": "ca.pem", "client_cert": "c.pem", "client_key": "c.key"}
    data = _config(insecure_http=True) | {"peers": [peer]}
    parsed = parse_config(data, path).peers[0]
    assert parsed.ca_bundle == (tmp_path / "etc" / "ca.pem").resolve()
    assert parsed.client_cert == (tmp_path / "etc" / "c.pem").resolve()
    plain = data | {"peers": [peer | {"api_root": "http://127.0.0.1:1/api/"}]}
    with pytest.raises(ConfigError, match="https://"):
        parse_config(plain, path)
    keyless = data | {"peers": [{k: v for k, v in peer.items() if k != "client_cert"}]}
    with pytest.raises(ConfigError, match="client_key needs client_cert"):
        parse_config(keyless, path)


def test_peer_tls_files_are_checked(tmp_path: Path, pki: Pki) -> None:
    cert = pki.certs["client-a"]
    peer = {"name": "p", "api_root": "https://127.0.0.1:1/api/", "user": "u"}
    peer |= {"ca_bundle": str(pki.partner_ca), "client_cert": str(cert.cert)}
    peer |= {"client_key": str(cert.key)}
    data = _config(insecure_http=True) | {"peers": [peer]}
    check_peer_tls(parse_config(data, tmp_path / "n.toml"))
    for key, value in (("ca_bundle", "missing.pem"), ("client_key", str(pki.certs["someone"].key))):
        broken = parse_config(data | {"peers": [peer | {key: value}]}, tmp_path / "n.toml")
        with pytest.raises(ConfigError, match="peer 'p'"):
            check_peer_tls(broken)
    # The client reports an unreadable CA bundle as a peer error, not a crash.
    client = TaxiiClient(peer["api_root"], "u", "p", ca_bundle=tmp_path / "missing.pem")
    with pytest.raises(RemoteError) as refused:
        client.collections()
    assert not refused.value.transient


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*taxii_node_command(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_and_check_refuse_insecure_configs(tmp_path: Path, pki: Pki) -> None:
    files = NodeFiles(tmp_path / "n", "n", f"sqlite:///{tmp_path / 'n.db'}", free_port())
    files.init()
    good = files.config_path.read_text()
    cases = {
        "no-transport": (good.replace("insecure_http = true\n", ""), "insecure_http = true"),
        "open-host": (
            good.replace('host = "127.0.0.1"', 'host = "0.0.0.0"'),
            "not on host '0.0.0.0'",
        ),
        "mismatched-key": (
            good.replace(
                "insecure_http = true\n",
                f"tls_cert = {json.dumps(str(pki.certs['server-a'].cert))}\n"
                f"tls_key = {json.dumps(str(pki.certs['server-b'].key))}\n",
            ),
            "cannot load",
        ),
    }
    for name, (text_, message) in cases.items():
        config = tmp_path / f"{name}.toml"
        config.write_text(text_)
        # check in process; serve as a process, which a regression would leave serving
        for result in (cli_in_process("--config", str(config), "check"), _cli(config, "serve")):
            command = result.args[-1]
            assert result.returncode == 2, (name, command, result.stdout, result.stderr)
            assert message in result.stderr, (name, command, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1
            assert "Listening" not in result.stdout + result.stderr


# -- accounts -------------------------------------------------------------------


def test_user_commands_bind_accounts_to_certificates(tmp_path: Path, pki: Pki) -> None:
    files = NodeFiles(tmp_path / "n", "n", f"sqlite:///{tmp_path / 'n.db'}", free_port())
    files.init()
    run = files.cli_in_process  # what the commands do; the CLI as a process: test_cli
    cert = pki.certs["client-b"]
    files.add_user("peer-1", "peer-password-1", cert_fingerprint=cert.openssl_fingerprint)
    assert run("user", "cert", "peer-1").stdout.strip() == f"cert:sha256:{cert.fingerprint}"
    listing = {line.split("\t")[0]: line for line in run("user", "list").stdout.splitlines()}
    assert listing["peer-1"].endswith(f"\tcert:sha256:{cert.fingerprint}")

    taken = run("user", "add", "peer-2", "--password-stdin", "--cert-fingerprint",
                cert.fingerprint, input="peer-password-2\n", check=False)  # fmt: skip
    assert taken.returncode == 2 and "already bound to user 'peer-1'" in taken.stderr
    bad = run("user", "cert", "peer-1", "--cert-fingerprint", "abc", check=False)
    assert bad.returncode == 2 and "not a SHA-256 fingerprint" in bad.stderr
    both = run("user", "cert", "peer-1", "--cert-fingerprint", cert.fingerprint,
               "--cert-subject", "CN=x", check=False)  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr

    run("user", "cert", "peer-1", "--cert-subject", "o=Unit B, CN = node-b,OU=Sync")
    shown = run("user", "cert", "peer-1").stdout.strip()
    assert shown == "cert:subject:CN=node-b,O=Unit B,OU=Sync"
    run("user", "cert", "peer-1", "--clear")
    assert run("user", "cert", "peer-1").stdout.strip() == "-"
    assert "cert:" not in run("user", "list").stdout


def test_subjects_and_fingerprints_are_normalised() -> None:
    canonical = accounts.parse_subject("CN=node-b,O=Partner")
    assert canonical == accounts.parse_subject(" o = Partner ,cn=node-b")
    assert canonical == accounts.canonical_subject(
        [("organizationName", "Partner"), ("commonName", "node-b")]
    )
    assert canonical != accounts.parse_subject("CN=Node-B,O=Partner")
    assert accounts.parse_subject(r"O=Example\, Inc.,CN=a") == r"CN=a,O=Example\, Inc."
    for bad in ("", "CN", "CN=", "=x", "CN=a\\"):
        with pytest.raises(ValueError):
            accounts.parse_subject(bad)
    digest = "ab" * 32
    assert accounts.normalize_fingerprint(":".join(["AB"] * 32)) == digest
    assert accounts.normalize_fingerprint(f"sha256 Fingerprint={digest.upper()}") == digest
    with pytest.raises(ValueError):
        accounts.normalize_fingerprint("ab" * 20)
    # Not a TLS connection (plain HTTP, the Flask test client): no certificate.
    assert peer_certificate({}) is None
    with socket.socket() as plain:
        assert peer_certificate({"gunicorn.socket": plain}) is None


def test_migration_4_adds_the_binding_columns_to_an_older_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.migrate()
        # Make it a store of schema version 3, from before certificate bindings.
        with store.write() as connection:
            connection.execute(text("ALTER TABLE users DROP COLUMN cert_fingerprint"))
            connection.execute(text("ALTER TABLE users DROP COLUMN cert_subject"))
            connection.execute(schema.schema_version.delete().where(text("version = 4")))
        assert not store.is_current()
        assert store.migrate() == ["4: client certificate bindings of accounts"]
        columns = {c["name"] for c in inspect(store.engine).get_columns("users")}
        assert {"cert_fingerprint", "cert_subject"} <= columns
        with store.write() as connection:
            accounts.add_user(connection, "peer", "peer-password")
            accounts.bind_certificate(connection, "peer", fingerprint="ab" * 32, subject=None)
            found = accounts.account_for_certificate(connection, "ab" * 32, None)
        assert found is not None and found.name == "peer"
        assert store.migrate() == []
    finally:
        store.close()
