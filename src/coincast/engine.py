"""Moved to :mod:`coincast.patches`; this name is kept only for cli.py until it imports from there (delete then)."""
from coincast.patches import lighten_ploomber_engine as lighten  # noqa: F401
