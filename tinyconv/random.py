"""tinyconv's global random number generator: ``manual_seed`` makes initialisation, dropout and ``randn`` repeatable.

The state is a plain dict of ints (NumPy's PCG64 state), so checkpoints can store it without pickle.
"""
from __future__ import annotations

import json

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator (used by ``nn.init``, ``F.dropout``, ``tc.randn`` ...) and return it."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    return _generator


def get_rng_state() -> str:
    """The global generator's state as a JSON string (safe to store in an .npz)."""
    return json.dumps(_generator.bit_generator.state)


def set_rng_state(state: str) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    global _generator
    parsed = json.loads(state)
    bit_generator = getattr(np.random, parsed["bit_generator"])()
    bit_generator.state = parsed
    _generator = np.random.Generator(bit_generator)
