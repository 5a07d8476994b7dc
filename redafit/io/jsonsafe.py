"""Strict JSON output: JSON has no NaN or Infinity (Python's ``json`` writes them as bare tokens that other parsers
reject), so every value redafit writes as JSON goes through :func:`json_safe` first: non-finite floats become
``null``, NumPy scalars and arrays plain Python types, tuples lists. :func:`dumps` and :func:`dump` then refuse
anything left over (``allow_nan=False``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def json_safe(obj):
    """``obj`` with non-finite floats as None, NumPy values as Python values, paths as strings (recursively)."""
    if isinstance(obj, dict):
        return {_key(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _key(k) -> str:
    """A dict key as :mod:`json` writes it (``True`` -> ``"true"``, ``None`` -> ``"null"``, numbers as text)."""
    if isinstance(k, str):
        return k
    return json.dumps(json_safe(k)) if isinstance(k, (bool, np.bool_, type(None))) else str(json_safe(k))


def dumps(obj, **kw) -> str:
    """:func:`json.dumps` of :func:`json_safe` ``(obj)``, strict (no NaN/Infinity tokens)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def dump(obj, fh, **kw) -> None:
    """:func:`json.dump` of :func:`json_safe` ``(obj)`` into the open text file ``fh``, strict."""
    json.dump(json_safe(obj), fh, allow_nan=False, **kw)
