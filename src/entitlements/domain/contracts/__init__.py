"""Contracts and e-signatures (seed 000): content-hashed agreements, token-gated signing,
hash-chained signer events with commitments to personal data, signed checkpoints and
completion certificates. Pure: time, randomness and keys are parameters."""
