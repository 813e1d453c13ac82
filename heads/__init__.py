"""Pure torch heads. The built-in heads register on import (plugins: heads/registry.py)."""

from heads import aura, baselines, causal, facr, faud, lasca  # noqa: F401  (registration)
