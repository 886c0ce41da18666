"""The TAXII 2.1 HTTP layer: negotiation, authentication, filters and views."""
