"""Bilateral synchronisation: a TAXII client for the peer and the push/pull worker."""
