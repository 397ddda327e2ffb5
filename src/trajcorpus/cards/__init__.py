"""Dataset cards for auditing (issue 6): OUT/README.md with hub metadata, provenance, filter
evidence, token statistics, checksums and deterministic plots, all read from the output's records.
"""

from .writer import CARD_DIR, build_card, write_card

__all__ = ["CARD_DIR", "build_card", "write_card"]
