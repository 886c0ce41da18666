"""taxii-node: a bilateral STIX 2.1 / TAXII 2.1 threat-intelligence sharing node."""

__version__ = "0.1.0"
