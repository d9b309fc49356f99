"""tinyconv's on/off environment switches, read the same way everywhere: a value that is neither on nor off warns
and leaves the default, so that a typo never stops ``import tinyconv``.

Standard library only: :mod:`tinyconv.memory` reads its switch before anything else is imported.
"""
from __future__ import annotations

import os
import warnings

__all__ = ["ON", "OFF", "env_switch", "warn_bad_value"]

ON = ("1", "on", "true", "yes")
OFF = ("0", "off", "false", "no")


def warn_bad_value(var: str, value: str, valid: str, fallback: str) -> None:
    """A RuntimeWarning naming the variable, its value, the valid values and what is used instead."""
    warnings.warn(f"environment variable {var}={value!r} is not valid; valid values: {valid}; "
                  f"using {fallback}", RuntimeWarning, stacklevel=3)


def env_switch(var: str, default: bool, off=OFF) -> bool:
    """True or False from ``os.environ[var]``: unset or empty gives ``default``, one of :data:`ON` True, one of
    ``off`` False (case and spaces ignored); anything else warns (:func:`warn_bad_value`) and gives ``default``."""
    raw = os.environ.get(var)
    value = (raw or "").strip().lower()
    if not value:
        return default
    if value in ON:
        return True
    if value in off:
        return False
    valid = ", ".join(repr(v) for v in ON + tuple(off))
    warn_bad_value(var, raw, valid, f"the default ({'on' if default else 'off'})")
    return default
