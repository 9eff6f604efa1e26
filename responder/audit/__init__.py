"""Tamper evidence that holds against the store's own owner: the action log's Merkle tree,
signed checkpoints kept by the sinks, and proofs anyone can check (docs/audit-log.md)."""
