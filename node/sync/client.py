"""A small TAXII 2.1 client for talking to the partner's node.

The worker needs what general clients hide: the ``X-TAXII-Date-Added-Last``
header (its cursor), the API root's ``max_content_length`` (to size
envelopes), status polling, and a clear line between errors worth retrying
(network, timeouts, 5xx, 429) and answers that will not change (other 4xx).
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass

import requests

from node import jsoncodec
from node.config import Config, ConfigError
from node.taxii.negotiation import TAXII_21


class PeerError(Exception):
    """The peer could not be reached or answered with an error."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True)
class ObjectPage:
    objects: list[dict]
    more: bool
    next: str | None
    date_added_last: str | None
    date_added_first: str | None = None


class PeerClient:
    """A TAXII 2.1 client; over https it always verifies the server's certificate.

    ``ca_bundle`` names the CA certificates the server's certificate must chain
    to (without it, the system's trust store, or ``REQUESTS_CA_BUNDLE``);
    ``client_cert`` and ``client_key`` are the certificate presented for mutual
    TLS (``client_key`` may be omitted when ``client_cert`` holds both).
    """

    def __init__(
        self,
        api_root: str,
        user: str,
        password: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        self._timeout = timeout
        # Passed with every request, not set on the session: requests lets the
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE environment variables override a
        # session's ``verify`` (psf/requests#3829), but never a per-request one.
        self._verify: str | bool = str(ca_bundle) if ca_bundle is not None else True
        self._cert: str | tuple[str, str] | None = None
        if client_cert is not None:
            cert = str(client_cert)
            self._cert = (cert, str(client_key)) if client_key is not None else cert
        self._session = session or requests.Session()
        self._session.auth = (user, password)
        # The versioned media type: medallion 3.0.0 refuses the versionless one.
        self._session.headers["Accept"] = TAXII_21

    def close(self) -> None:
        self._session.close()

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            response = self._session.request(
                method, url, timeout=self._timeout, verify=self._verify, cert=self._cert, **kwargs
            )
        except requests.RequestException as exc:
            raise PeerError(f"{method} {url}: {exc}", transient=True) from None
        except OSError as exc:  # requests: an unreadable ca_bundle or client_cert
            raise PeerError(f"{method} {url}: {exc}", transient=False) from None
        if response.status_code >= 400:
            raise PeerError(
                f"{method} {url}: HTTP {response.status_code}: {_error_text(response)}",
                transient=response.status_code >= 500 or response.status_code in (408, 429),
                status=response.status_code,
            )
        return response

    def _json(self, response: requests.Response) -> dict:
        try:
            document = response.json()
        except ValueError:
            raise PeerError(
                f"{response.request.method} {response.url}: the answer is not JSON",
                transient=True,
            ) from None
        if not isinstance(document, dict):
            raise PeerError(f"{response.url}: unexpected answer {document!r:.80}", transient=True)
        return document

    def max_content_length(self) -> int:
        info = self._json(self._request("GET", self.api_root))
        value = info.get("max_content_length")
        return value if isinstance(value, int) and value > 0 else 10 * 1024 * 1024

    def collection_id(self, name: str) -> str:
        """Resolve a collection named by id or alias on the peer."""
        for collection in self.collections():
            if name in (collection.get("id"), collection.get("alias")):
                return collection["id"]
        raise PeerError(
            f"the server has no collection {name!r} visible to this account", transient=False
        )

    def collections(self) -> list[dict]:
        listing = self._json(self._request("GET", self.api_root + "collections/"))
        found = listing.get("collections", [])
        return found if isinstance(found, list) else []

    def objects_page(
        self, collection_id: str, *, added_after: str | None, next_token: str | None, limit: int
    ) -> ObjectPage:
        """A page of every version added after ``added_after`` (the sync worker's view)."""
        params: dict[str, str | int] = {"limit": limit, "match[version]": "all"}
        if added_after:
            params["added_after"] = added_after
        if next_token:
            params["next"] = next_token
        return self.page(collection_id, params)

    def page(self, collection_id: str, params: dict, endpoint: str = "objects") -> ObjectPage:
        """One page of ``objects`` or ``manifest`` with the given TAXII filters."""
        url = f"{self.api_root}collections/{collection_id}/{endpoint}/"
        response = self._request("GET", url, params=params)
        envelope = self._json(response)
        objects = envelope.get("objects", [])
        more = bool(envelope.get("more", False))
        token = envelope.get("next")
        return ObjectPage(
            objects=objects if isinstance(objects, list) else [],
            more=more and bool(token),
            next=token if isinstance(token, str) else None,
            date_added_last=response.headers.get("X-TAXII-Date-Added-Last"),
            date_added_first=response.headers.get("X-TAXII-Date-Added-First"),
        )

    def post_objects(self, collection_id: str, objects: list[dict], poll_seconds: float = 60.0):
        """POST one envelope and follow its status resource until complete (4.3.1)."""
        texts = [jsoncodec.dumps(obj) for obj in objects]
        return self.post_serialized(collection_id, texts, poll_seconds)

    def post_serialized(self, collection_id: str, texts: list[str], poll_seconds: float = 60.0):
        """As ``post_objects``, for objects already serialised (the worker sizes envelopes)."""
        url = f"{self.api_root}collections/{collection_id}/objects/"
        body = ('{"objects":[' + ",".join(texts) + "]}").encode()
        response = self._request("POST", url, data=body, headers={"Content-Type": TAXII_21})
        status = self._json(response)
        deadline = time.monotonic() + poll_seconds
        delay = 0.2
        while status.get("status") != "complete" and status.get("pending_count", 0) > 0:
            if time.monotonic() > deadline:
                raise PeerError(f"status {status.get('id')} still pending", transient=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            status = self._json(self._request("GET", f"{self.api_root}status/{status.get('id')}/"))
        return status


def check_peer_tls(config: Config) -> None:
    """Load each peer's ca_bundle and client certificate; ConfigError if one fails."""
    for peer in config.peers:
        context = ssl.create_default_context()
        try:
            if peer.ca_bundle is not None:
                context.load_verify_locations(cafile=str(peer.ca_bundle))
            if peer.client_cert is not None:
                key = peer.client_key or peer.client_cert
                context.load_cert_chain(str(peer.client_cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.path}: peer {peer.name!r} ca_bundle, client_cert, client_key: {exc}"
            ) from None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return str(body.get("description") or body.get("title") or body)[:300]
    except ValueError:
        return response.text[:200].strip() or response.reason
