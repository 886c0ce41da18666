"""What an operator does to a node, as importable, typed operations.

The command line and the web console both call these; neither composes store
calls itself.  Each operation runs in the caller's write transaction (the
caller decides what commits together), checks what it is given, raises the
node's own exceptions (``node.errors``) for what it refuses, and appends its
own audit records, naming the ``actor`` (``cli:alice``, ``console:admin``...).
"""
