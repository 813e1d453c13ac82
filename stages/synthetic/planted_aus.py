"""Cached-feature stand-ins with AU → AU rules planted in them: what a learned AU → AU graph can be
checked against (CausalAffect's, issue 36).

Eight AUs in four pairs (``PLANTED``): a source present in 35 % of faces and its target following it
(85 % with it, 10 % without) or, for the inhibited pair, avoiding it (10 % with it, 50 % without).
Each AU adds its own random pattern to a 32-d Gaussian feature, sources strongly (2.0), targets
weakly (0.3), so a target's best evidence is its source's presence. The class is AU0 ∧ AU1, AU2, or
neither. What it is not: faces. The rules are co-activations a face would show (AU1 with AU2, AU6
with AU12, AU25 with AU26), but the features are not an encoder's, and nothing else correlates.
"""

from __future__ import annotations

import numpy as np

# (source, target, sign): the planted AU → AU rules
PLANTED = ((0, 1, +1), (2, 3, +1), (4, 5, +1), (6, 7, -1))
AU_NAMES = tuple(f"AU{i}" for i in range(8))
CLASSES = ("neutral", "happiness", "sadness")
FEATURE_DIM = 32


def planted_au_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 32) float32, labels (n, 9): the eight AUs then the class index)."""
    rng = np.random.default_rng(seed)
    aus = np.zeros((n, len(AU_NAMES)), bool)
    for source, target, sign in PLANTED:
        aus[:, source] = rng.random(n) < 0.35
        with_source, without = (0.85, 0.1) if sign > 0 else (0.1, 0.5)
        aus[:, target] = np.where(aus[:, source], rng.random(n) < with_source, rng.random(n) < without)
    patterns = np.random.default_rng(99).normal(size=(len(AU_NAMES), FEATURE_DIM))
    x = rng.normal(size=(n, FEATURE_DIM)) + (aus * np.array([2.0, 0.3] * 4)) @ patterns
    expression = np.where(aus[:, 0] & aus[:, 1], 1, np.where(aus[:, 2], 2, 0))
    return x.astype(np.float32), np.concatenate([aus.astype(np.int64), expression[:, None]], 1)
