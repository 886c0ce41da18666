"""A stock medallion 3.0.0 server (the OASIS reference TAXII 2.1 server) as a test peer.

``start_medallion(directory)`` writes a medallion JSON config and a data file
for its memory backend (``medallion.backends.memory_backend.MemoryBackend``)
into ``directory``, starts ``tests/medallion_launcher.py`` (medallion's own
module-level Flask app on werkzeug's threaded server, as ``medallion`` runs it;
or, with ``server="gunicorn"``, on one gunicorn gthread worker, which unlike
werkzeug keeps connections alive) in a subprocess on a free loopback port, and
waits until it answers::

    peer = start_medallion(tmp_path, {"alpha": "6f1f0a9a-..."})
    try:
        requests.get(peer.collection_url("alpha"), auth=(peer.user, peer.password),
                     headers={"Accept": MEDIA_TYPE})
    finally:
        peer.stop()

The data file holds one API root, ``trustgroup1``, with the given collections,
empty and readable and writable (``can_read``/``can_write`` true).  The server
keeps everything in memory; nothing is written back to the data file.

Known defects of medallion 3.0.0 that a client must work around
-----------------------------------------------------------------
* Accept: only ``application/taxii+json;version=2.1`` is accepted.  A
  versionless ``application/taxii+json``, ``*/*``, a missing Accept header or
  any ``q=`` parameter is answered 406.  Send ``Accept: MEDIA_TYPE``.
* POST needs a ``Content-Length`` header: a chunked body (no length) is
  answered 400.  The Content-Type must be exactly
  ``application/taxii+json;version=2.1`` (415 otherwise, versionless too).
  Send a bytes body, never a generator.
* ``next`` without ``limit`` is a 500 (``KeyError: 'limit'`` in
  ``MemoryBackend.get_next``): always repeat ``limit`` on follow-up pages.
  ``next`` must also come with exactly the filters of the first page (400
  otherwise), and the token is one-shot: it is consumed page by page
  (``list.pop(0)``), so a page cannot be fetched twice, and it expires
  ``session_timeout`` (30 s by default) after the first page, however
  actively it is being paged (``start_medallion(..., session_timeout=...)``).
  A bad ``added_after`` is a 500 too.
* Paging is quadratic: the first page of a GET objects sorts every object
  against the manifest (``BasicFilter.sort_and_paginate`` calls ``strptime``
  for every object/manifest pair), and every request deep-copies the whole
  collection (``get_collection``), so each request costs O(objects) and the
  first page O(objects^2).  Keep collections to a few thousand objects.
* ``add_objects`` compares each new object with every stored one (O(n) per
  object); a repeated (id, version) is reported as a *failure* ("Unable to
  process object"), not as a success, and objects without ``modified`` are
  treated as having one version only (a new ``created`` is rejected).
* The memory backend is not thread-safe (concurrent requests share its lists
  without a lock) and lives in one process.  medallion's own launcher serves
  it with werkzeug's development server, which closes the connection after
  every response (``Connection: close``): no keep-alive.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.nodes import free_port
from tests.peer_process import MEDIA_TYPE, PeerProcess

API_ROOT = "trustgroup1"
USER = "medallion-user"
PASSWORD = "medallion-password-1"
MAX_PAGE_SIZE = 1000
MAX_CONTENT_LENGTH = 10 * 1024 * 1024

DEFAULT_COLLECTIONS = {
    "alpha": "91a7b528-80eb-42ed-a74d-c6fbd5a26116",
    "beta": "52892447-4d7e-4f70-b94d-d7f22742ff63",
}

LAUNCHER = Path(__file__).with_name("medallion_launcher.py")


def medallion_data(base_url: str, collections: dict[str, str]) -> dict:
    """The memory backend's data file: discovery, one API root, empty collections."""
    root_url = f"{base_url}/{API_ROOT}/"
    return {
        "/discovery": {
            "title": "medallion peer",
            "description": "stock medallion 3.0.0, memory backend (test peer)",
            "contact": "",
            "default": root_url,
            "api_roots": [root_url],
        },
        API_ROOT: {
            "information": {
                "title": "Trust group 1",
                "description": "medallion test API root",
                "versions": [MEDIA_TYPE],
                "max_content_length": MAX_CONTENT_LENGTH,
            },
            "status": [],
            "collections": [
                {
                    "id": collection_id,
                    "title": f"Collection {alias}",
                    "description": f"medallion collection {alias}",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
                for alias, collection_id in collections.items()
            ],
        },
    }


@dataclass(kw_only=True)
class MedallionPeer(PeerProcess):
    user: str = USER
    password: str = PASSWORD
    session_timeout: float | None = None  # seconds a ``next`` token lives; None: 30
    server: str = "werkzeug"  # or "gunicorn" (one gthread worker, keep-alive)
    threads: int = 4

    name = "medallion"
    log_name = "medallion.log"

    @property
    def api_root(self) -> str:
        return f"{self.base_url}/{API_ROOT}/"

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        data_path = self.directory / "medallion-data.json"
        data_path.write_text(json.dumps(medallion_data(self.base_url, self.collections), indent=2))
        config_path = self.directory / "medallion-config.json"
        backend: dict = {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(data_path),
        }
        if self.session_timeout is not None:
            backend["session_timeout"] = self.session_timeout
        config = {
            "users": {self.user: self.password},
            "taxii": {"max_page_size": MAX_PAGE_SIZE},
            "backend": backend,
        }
        config_path.write_text(json.dumps(config, indent=2))
        return config_path

    def start(self, timeout: float = 30.0) -> MedallionPeer:
        config_path = self.write_config()
        command = [sys.executable, str(LAUNCHER), str(config_path), str(self.port)]
        command += [f"--server={self.server}", f"--threads={self.threads}"]
        self.spawn(command, timeout, self.answers_discovery)
        return self


def start_medallion(
    directory: Path,
    collections: dict[str, str] | None = None,
    *,
    session_timeout: float | None = None,
    server: str = "werkzeug",
    threads: int = 4,
    timeout: float = 30.0,
) -> MedallionPeer:
    """A running medallion 3.0.0 (memory backend) with ``collections`` (alias -> id).

    ``collections`` defaults to ``DEFAULT_COLLECTIONS``; ``session_timeout``
    is the memory backend's lifetime of a ``next`` token (its default: 30 s);
    ``server`` is "werkzeug" (medallion's own way) or "gunicorn".
    """
    if server not in ("werkzeug", "gunicorn"):
        raise ValueError(f"server must be 'werkzeug' or 'gunicorn', not {server!r}")
    peer = MedallionPeer(
        directory=Path(directory),
        port=free_port(),
        collections=dict(collections or DEFAULT_COLLECTIONS),
        session_timeout=session_timeout,
        server=server,
        threads=threads,
    )
    return peer.start(timeout=timeout)
