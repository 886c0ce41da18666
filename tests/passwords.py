"""Cheap password hashes for the accounts the test harness creates.

Every test node has an administrator, partner accounts and analysts, and a
hash at the node's cost (``node.store.accounts.PASSWORD_COST``, about 60 ms of
CPU) for each of them, and for checking each at a server, was about two fifths
of the CPU of the tests that set up nodes.  The test processes (pytest's, and
the zygote the test servers fork from) hash at a trivial cost instead; a
stored hash names its parameters and is checked with them, so the code that
hashes and checks is the node's own.  ``python -m node`` in a process of its
own, and tests/test_security.py's check of the default, hash at the real cost.
"""

from __future__ import annotations

from node.store import accounts

TEST_PASSWORD_COST = accounts.ScryptCost(n=16, r=1, p=1)


def hash_cheaply() -> None:
    """Hash new passwords in this process at ``TEST_PASSWORD_COST``."""
    accounts.PASSWORD_COST = TEST_PASSWORD_COST
