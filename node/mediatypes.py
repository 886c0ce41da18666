"""The media types of TAXII 2.1 and STIX 2.1 (TAXII 2.1 section 1.6.8).

Here rather than in the HTTP layer because the store (a collection's default
``media_types``), the client and the server all name them.
"""

from __future__ import annotations

TAXII_MEDIA = "application/taxii+json"  # without a version: the latest the server supports
TAXII_21 = "application/taxii+json;version=2.1"
STIX_21 = "application/stix+json;version=2.1"  # STIX 2.1 content
