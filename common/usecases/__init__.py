"""The use cases: validate a batch, transform a batch (they wire the engine to the adapters)."""
