"""The one metrics module: expression, AU, valence/arousal and preference scores on numpy arrays.

F1 and accuracy are counted from a confusion matrix with numpy, to scikit-learn's definitions
(``zero_division=0``; tests compare them with ``sklearn.metrics`` on random labels): importing
``sklearn.metrics`` costs 1.2 s, a fifth of a head's whole retrain from the shell, and these are the
only scores the trainer needs every epoch. CCC is written out because no maintained library exposes
Lin's concordance correlation coefficient with the population moments it is defined by.
Missing labels (expression −1, AU −1, VA NaN) are excluded per label, never counted.
"""

from __future__ import annotations

import numpy as np


def f1_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class ``0..n_classes-1``: 2·TP / (2·TP + FP + FN), 0 where a class is neither
    predicted nor present (scikit-learn's ``zero_division=0``)."""
    pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
    confusion = np.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, -1)
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(0) + confusion.sum(1)  # (TP+FP) + (TP+FN)
    return np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)


def ccc(pred: np.ndarray, target: np.ndarray) -> float:
    """Lin's concordance correlation coefficient: 2·cov / (var_p + var_t + (mean_p − mean_t)²),
    population moments, over the finite pairs."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    keep = np.isfinite(pred) & np.isfinite(target)
    p, t = pred[keep], target[keep]
    if p.size < 2:
        return float("nan")
    mp, mt = p.mean(), t.mean()
    cov = ((p - mp) * (t - mt)).mean()
    return float(2 * cov / (p.var() + t.var() + (mp - mt) ** 2))


def expression_metrics(
    pred: np.ndarray, target: np.ndarray, n_classes: int, names: list[str] | None = None
) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes ``0..n_classes-1`` (labels −1 are skipped), and with
    ``names`` each class's F1 (``f1_<name>``: a rare class that is never predicted shows as 0)."""
    keep = target >= 0
    p, t = pred[keep], target[keep]
    per_class = f1_per_class(p, t, n_classes)
    out = {"accuracy": float(np.mean(p == t)) if t.size else 0.0, "macro_f1": float(per_class.mean())}
    if names:
        out.update({f"f1_{name}": float(f) for name, f in zip(names, per_class, strict=True)})
    return {**out, "n": int(keep.sum())}


def au_metrics(pred: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, float]:
    """F1 per AU (positive class) over its labelled samples, and their mean."""
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        keep = target[:, j] >= 0
        out[f"f1_{name}"] = float(f1_per_class(pred[keep, j], target[keep, j], 2)[1]) if keep.any() else float("nan")
    scores = [v for v in out.values() if np.isfinite(v)]
    out["mean_f1"] = float(np.mean(scores)) if scores else float("nan")
    return out


def preference_metrics(logits: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Accuracy of "the affect rises" (logit > 0) over the labelled pairs (NaN labels excluded)."""
    keep = np.isfinite(target)
    correct = (logits[keep] > 0) == (target[keep] > 0.5)
    return {"accuracy": float(correct.mean()) if keep.any() else float("nan"), "n": int(keep.sum())}


def va_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """CCC for valence and arousal and their mean (the ABAW / AffectNet headline), plus RMSE."""
    out = {"ccc_valence": ccc(pred[:, 0], target[:, 0]), "ccc_arousal": ccc(pred[:, 1], target[:, 1])}
    out["ccc_mean"] = float(np.nanmean([out["ccc_valence"], out["ccc_arousal"]]))
    for d, name in enumerate(("valence", "arousal")):
        keep = np.isfinite(target[:, d])
        out[f"rmse_{name}"] = (
            float(np.sqrt(np.mean((pred[keep, d] - target[keep, d]) ** 2))) if keep.any() else float("nan")
        )
    return out


def graph_metrics(estimate: np.ndarray, truth: np.ndarray, threshold: float = 0.0) -> dict[str, float]:
    """A learned signed graph against a known one (both d × d, entry [i, j] the edge i → j): edges are
    the entries with |w| > ``threshold``. SHD counts the edge additions, deletions and reversals that
    turn one skeleton into the other (a reversal once, as in NOTEARS / DAGMA's ``count_accuracy``);
    signed precision / recall count an edge correct only where it exists in both with the same sign."""
    est = np.sign(np.where(np.abs(estimate) > threshold, estimate, 0.0))
    true = np.sign(np.where(np.abs(truth) > threshold, truth, 0.0))
    e, t = est != 0, true != 0
    skeleton_e, skeleton_t = np.tril(e | e.T, -1), np.tril(t | t.T, -1)
    reversed_ = e & ~t & t.T  # an estimated edge whose reverse is the true one
    shd = int((skeleton_e & ~skeleton_t).sum() + (skeleton_t & ~skeleton_e).sum() + reversed_.sum())
    correct = int(((est == true) & e).sum())
    return {
        "shd": float(shd),
        "signed_precision": correct / max(int(e.sum()), 1),
        "signed_recall": correct / max(int(t.sum()), 1),
        "edges": float(e.sum()),
    }


def edge_recovery(weights: np.ndarray, planted: list[tuple[int, int]], init_scale: float) -> dict[str, float]:
    """How well a learned graph (d × d, [i, j] the edge i → j) ranks ``planted`` edges: the top-k
    pairs by strength, k = the number planted, each pair's strength the larger |w| of its two
    directions (co-activation data cannot orient an edge), against the planted pairs; with the
    largest and median off-diagonal |w| beside the initialisation's scale."""
    w = np.abs(np.asarray(weights, float))
    strength = np.maximum(w, w.T)
    rows, cols = np.triu_indices(w.shape[0], 1)
    top = np.argsort(-strength[rows, cols], kind="stable")[: len(planted)]
    found = {(int(rows[t]), int(cols[t])) for t in top}
    truth = {(min(i, j), max(i, j)) for i, j in planted}
    off = w[~np.eye(w.shape[0], dtype=bool)]
    return {
        "precision_at_k": len(found & truth) / len(truth),
        "max_abs_weight": float(off.max()),
        "median_abs_weight": float(np.median(off)),
        "init_scale": float(init_scale),
    }


def affective_distance(pred: np.ndarray, target: np.ndarray, cost: np.ndarray) -> float:
    """The affective distance of errors: mean ``cost[true, predicted]`` (circumplex distance) over
    the misclassified labelled samples (NaN without errors)."""
    pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
    wrong = (target >= 0) & (pred != target)
    return float(np.asarray(cost)[target[wrong], pred[wrong]].mean()) if wrong.any() else float("nan")


def confusion(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows the true class, columns the predicted one (labels −1 skipped)."""
    pred, target = np.asarray(pred, np.int64), np.asarray(target, np.int64)
    keep = target >= 0
    return np.bincount(target[keep] * n_classes + pred[keep], minlength=n_classes * n_classes).reshape(n_classes, -1)


def paired_test(a: list[float], b: list[float], alternative: str = "two-sided") -> dict[str, float]:
    """Wilcoxon's signed-rank test of paired runs (seeds) ``a`` against ``b`` (scipy, exact for few
    pairs): the mean difference a − b and the p-value (``alternative``: two-sided, greater: a > b,
    less). With five pairs the smallest p is 1/32 one-sided, 1/16 two-sided; p = 1 when every
    difference is 0."""
    from scipy.stats import wilcoxon

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    out = {"mean_difference": float(d.mean()) if d.size else float("nan"), "n": int(d.size)}
    if not d.size or not np.any(d != 0):
        return {**out, "p": 1.0 if d.size else float("nan")}
    return {**out, "p": float(wilcoxon(a, b, alternative=alternative).pvalue)}
