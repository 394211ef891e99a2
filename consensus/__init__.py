"""Pure PBFT: block format, canonical codec, messages, the replica state machine and its simulator.

Nothing here does I/O or reads a clock or a global RNG; see docs/consensus.md.
"""
