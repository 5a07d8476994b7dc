"""Locate the project's own asset files (``assets/`` in a checkout, ``redafit/assets`` when installed)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def asset_path(name: str) -> Path:
    """Path of ``assets/<name>``: the installed package data first, then the source checkout."""
    for p in (_HERE / "assets" / name, _HERE.parent / "assets" / name):
        if p.is_file():
            return p
    try:  # editable installs map the package redafit.assets onto the checkout's assets/
        from importlib.resources import files

        p = Path(str(files("redafit.assets") / name))
        if p.is_file():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return _HERE.parent / "assets" / name
