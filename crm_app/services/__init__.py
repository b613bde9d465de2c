"""Use cases. Each takes a session, applies the rules and owns the transaction (commits it)."""
