"""The ledger: one row per request, written in batches off the hot path."""
