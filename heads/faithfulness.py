"""Counterfactual AU faithfulness (FACR): does a model with an AU layer decide the way a structure G says?

A *reasoner* predicts a class through an AU bottleneck: ``au_layer(x)`` gives AU probabilities a
(B, M), ``from_aus(a, x)`` the class logits (B, C) from them (x only for heads whose AU → class map
depends on the sample). ``do(AU_i = v)`` replaces column i of a by v and nothing else, then runs the
class map again. An AU is *invoked* for class c when do(AU_i = 1) against do(AU_i = 0) moves the
probability of c by more than a threshold, on average over the samples of class c. Faithfulness is
the agreement (F1 by default, or Jaccard) between the invoked AUs and the AUs a signed structure G
(C, M) marks causal (G ≠ 0), per class and averaged over the classes G defines.

The faithfulness objective asks the same of training: the effect of a causal AU on its class must
reach a margin in G's direction (hinge), the effect of an AU G marks irrelevant must stay at 0
(absolute penalty), for the classes G defines. The verbaliser writes a rationale from a sample's
AU activations and the class map's edge weights; an AU it mentions is one whose ablation (a_i = 0)
removes its contribution, so ablating it removes it from the text.
"""

from __future__ import annotations

from typing import Protocol

import torch


class AuReasoner(Protocol):
    def au_layer(self, x: torch.Tensor) -> torch.Tensor: ...

    def from_aus(self, aus: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


def do(model: AuReasoner, x: torch.Tensor, au: int, value: float, aus: torch.Tensor | None = None) -> torch.Tensor:
    """Class logits (B, C) with AU ``au`` of the AU layer set to ``value`` for every sample (``aus``:
    the layer's values already computed)."""
    a = model.au_layer(x) if aus is None else aus
    intervened = a.clone()
    intervened[:, au] = value
    return model.from_aus(intervened, x)


def effects(model: AuReasoner, x: torch.Tensor, on: str = "logit") -> torch.Tensor:
    """(B, M, C): the class's logit (``on="logit"``) or probability (``"probability"``) under
    do(AU_i = 1) minus under do(AU_i = 0), for every sample, AU and class. Logits by default: the
    softmax couples the classes, so in probability every AU that raises a competitor "moves" every
    other class too, and a structure of the AUs that *raise* a class would count those as unfaithful."""
    return effects_at(model, x, model.au_layer(x), on)


def effects_at(model: AuReasoner, x: torch.Tensor, aus: torch.Tensor, on: str = "logit") -> torch.Tensor:
    """:func:`effects` with the AU layer's values ``aus`` already computed."""
    if on not in ("logit", "probability"):
        raise ValueError(f"effects on logit or probability, not {on!r}")
    read = (lambda z: z) if on == "logit" else (lambda z: z.softmax(-1))
    return torch.stack(
        [read(do(model, x, i, 1.0, aus)) - read(do(model, x, i, 0.0, aus)) for i in range(aus.shape[1])], 1
    )


def invoked(effect: torch.Tensor, labels: torch.Tensor, n_classes: int, threshold: float) -> torch.Tensor:
    """(C, M) bool: AUs whose mean |effect| on class c over the samples labelled c exceeds ``threshold``
    (a class without samples invokes nothing)."""
    out = torch.zeros(n_classes, effect.shape[1], dtype=torch.bool)
    for c in range(n_classes):
        mine = labels == c
        if mine.any():
            out[c] = effect[mine, :, c].abs().mean(0) > threshold
    return out


def agreement(found: torch.Tensor, structure: torch.Tensor, measure: str = "f1") -> tuple[torch.Tensor, float]:
    """(per class, mean over the classes ``structure`` defines): F1 or Jaccard between the invoked
    AUs ``found`` (C, M) and G's causal AUs (``structure`` ≠ 0). Both empty: agreement 1."""
    if measure not in ("f1", "jaccard"):
        raise ValueError(f"agreement measure f1 or jaccard, not {measure!r}")
    causal = structure != 0
    both = (found & causal).sum(1).float()
    either = (found | causal).sum(1).float()
    if measure == "f1":
        size = found.sum(1).float() + causal.sum(1).float()
        score = torch.where(size > 0, 2 * both / size.clamp(min=1), torch.ones_like(both))
    else:
        score = torch.where(either > 0, both / either.clamp(min=1), torch.ones_like(both))
    defined = causal.any(1)
    return score, float(score[defined].mean()) if defined.any() else float("nan")


def faithfulness_loss(
    effect: torch.Tensor, labels: torch.Tensor, structure: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean over the labelled samples of a class G defines (any AU non-zero in its row) of: hinge
    max(0, margin − sign(G[y, i]) · effect_i,y) over the AUs G marks causal for the sample's class y,
    plus |effect_i,y| over the AUs G marks irrelevant. A class G leaves empty takes no loss: G says
    nothing about it (the pain structure says nothing about happiness)."""
    keep = labels >= 0
    keep[keep.clone()] = (structure[labels[keep]] != 0).any(1)
    if not keep.any():
        return effect.sum() * 0.0
    y = labels[keep]
    own = effect[keep].gather(2, y[:, None, None].expand(-1, effect.shape[1], 1))[..., 0]  # (B, M): effect on y
    sign = structure[y].to(own.dtype).sign()  # (B, M)
    causal = sign != 0
    hinge = torch.relu(margin - sign * own) * causal
    still = own.abs() * ~causal
    return (hinge.sum(1) / causal.sum(1).clamp(min=1) + still.sum(1) / (~causal).sum(1).clamp(min=1)).mean()


def verbalise(
    activation: torch.Tensor,
    weights: torch.Tensor,
    au_names: list[str],
    descriptions: dict[str, str],
    label: str,
    floor: float = 0.05,
    limit: int = 4,
) -> tuple[str, list[str]]:
    """(rationale, AUs mentioned) for one sample: AUs ordered by activation × edge weight toward the
    predicted class (``weights`` (M,)), those above ``floor`` mentioned, at most ``limit``:
    "AU12 lip corner puller and AU6 cheek raiser → happiness". An ablated AU (activation 0) has no
    contribution and is never mentioned."""
    contribution = activation * weights
    order = [int(i) for i in torch.argsort(contribution, descending=True) if contribution[i] > floor][:limit]
    mentioned = [au_names[i] for i in order]
    parts = [f"{name} {descriptions.get(name, '').lower()}".strip() for name in mentioned]
    said = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts) or "no AU evidence"
    return f"{said} → {label}", mentioned


def rationale_audit(
    model: AuReasoner, x: torch.Tensor, mentioned: torch.Tensor, threshold: float, aus: torch.Tensor | None = None
) -> tuple[float, torch.Tensor]:
    """(share, moved): the share of the AUs the rationales mention (``mentioned`` (B, M) bool) whose
    ablation (a_i = 0) moves the predicted class's probability by more than ``threshold``, and
    ``moved`` (B, M) for every AU. One batched do() per AU."""
    a = model.au_layer(x) if aus is None else aus
    base = model.from_aus(a, x).softmax(-1)
    predicted = base.argmax(-1, keepdim=True)
    own = base.gather(1, predicted)[:, 0]
    moved = torch.stack(
        [
            (own - do(model, x, i, 0.0, a).softmax(-1).gather(1, predicted)[:, 0]).abs() > threshold
            for i in range(a.shape[1])
        ],
        1,
    )
    total = int(mentioned.sum())
    return (float((moved & mentioned).sum()) / total if total else float("nan")), moved


@torch.no_grad()
def audit(
    model: AuReasoner,
    x: torch.Tensor,
    labels: torch.Tensor,
    structure: torch.Tensor,
    au_names: list[str],
    descriptions: dict[str, str],
    class_names: list[str],
    threshold: float = 0.5,
    measure: str = "f1",
    probability_threshold: float = 0.05,
    batch_size: int = 4096,
) -> dict:
    """FACR's audit of a reasoner on samples ``x`` with class ``labels``: every AU × do(0), do(1) ×
    every sample. Returns the invoked AUs (C, M), the agreement with ``structure`` per class and on
    average, each sample's prediction and rationale (AUs by activation × their effect on the
    predicted class), the AUs each rationale mentions and whether ablating each moves the prediction."""
    parts: dict[str, list] = {k: [] for k in ("effect", "predicted", "mentioned", "moved", "rationale")}
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        a = model.au_layer(xb)
        effect = effects_at(model, xb, a)
        predicted = model.from_aus(a, xb).argmax(-1)
        own = effect.gather(2, predicted[:, None, None].expand(-1, effect.shape[1], 1))[..., 0]  # (B, M)
        mentioned = torch.zeros_like(own, dtype=torch.bool)
        for b in range(xb.shape[0]):
            text, said = verbalise(a[b], own[b], au_names, descriptions, class_names[int(predicted[b])])
            mentioned[b, [au_names.index(n) for n in said]] = True
            parts["rationale"].append(text)
        _, moved = rationale_audit(model, xb, mentioned, probability_threshold, a)
        for name, value in (("effect", effect), ("predicted", predicted), ("mentioned", mentioned), ("moved", moved)):
            parts[name].append(value)
    effect, predicted, mentioned, moved = (torch.cat(parts[k]) for k in ("effect", "predicted", "mentioned", "moved"))
    found = invoked(effect, labels, len(class_names), threshold)
    per_class, mean = agreement(found, structure, measure)
    total = int(mentioned.sum())
    return {
        "invoked": found,
        "agreement": per_class,
        "mean_agreement": mean,
        "predicted": predicted,
        "effect_on_predicted": effect.gather(2, predicted[:, None, None].expand(-1, effect.shape[1], 1))[..., 0],
        "mentioned": mentioned,
        "moved": moved,
        "rationales": parts["rationale"],
        "rationale_faithfulness": float((moved & mentioned).sum()) / total if total else float("nan"),
    }
