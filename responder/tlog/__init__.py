"""The transparency-log format the action log is kept in: RFC 9162 Merkle trees, and
the canonical bytes of a record (its leaf). Pure functions, importing nothing above."""
