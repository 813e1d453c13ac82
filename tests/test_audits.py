"""The circumplex transport term against hand computations and POT's exact solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heads.losses import circumplex_costs, transport_cost


def test_circumplex_costs_are_distances_between_class_positions():
    positions = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    cost = circumplex_costs(positions)
    np.testing.assert_allclose(cost.numpy(), [[0, 1, 1], [1, 0, np.sqrt(2)], [1, np.sqrt(2), 0]], rtol=1e-6)


def test_one_hot_transport_is_the_expected_cost_of_the_prediction_and_pot_agrees():
    import ot

    cost = circumplex_costs(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 3.0]])
    labels = torch.tensor([0, 2, -1])
    p = logits.softmax(-1).numpy()
    c = cost.numpy()
    by_hand = [p[0] @ c[0], p[1] @ c[2], 0.0]  # the unlabelled row costs nothing
    np.testing.assert_allclose(transport_cost(logits, labels, cost).numpy(), by_hand, rtol=1e-6)
    for row, y in ((0, 0), (1, 2)):
        onehot = np.eye(3)[y]
        assert ot.emd2(onehot, p[row].astype(np.float64), c.astype(np.float64)) == pytest.approx(by_hand[row], 1e-6)
    soft = torch.eye(3)[[0, 2]]  # the same targets given as distributions: POT's path
    np.testing.assert_allclose(transport_cost(logits[:2], soft, cost).numpy(), by_hand[:2], rtol=1e-5)


def test_soft_targets_move_only_the_mass_that_differs_at_its_cheapest_and_pass_gradients():
    # two classes at distance 1: from (0.7, 0.3) to (0.4, 0.6) 0.3 of the mass moves once
    cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    logits = torch.log(torch.tensor([[0.4, 0.6]])).requires_grad_(True)
    value = transport_cost(logits, torch.tensor([[0.7, 0.3]]), cost)
    assert float(value.detach()) == pytest.approx(0.3, abs=1e-6)
    value.sum().backward()
    assert logits.grad[0, 1] > 0 > logits.grad[0, 0]  # more mass on class 1 costs more
    # three classes on a line 0 — 1 — 2: half the mass shifts one place right, 0.5 × 2 however it is routed
    line = circumplex_costs(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
    shifted = transport_cost(torch.log(torch.tensor([[0.0001, 0.5, 0.4999]])), torch.tensor([[0.5, 0.5, 0.0]]), line)
    assert float(shifted) == pytest.approx(0.5 * 2 - 0.0001 * 2, abs=1e-3)


class LinearReasoner(torch.nn.Module):
    """AU probabilities σ(W x) → class logits a V: the smallest reasoner with an AU layer."""

    def __init__(self, w: torch.Tensor, v: torch.Tensor):
        super().__init__()
        self.w, self.v = w, v
        self.seen: list[torch.Tensor] = []

    def au_layer(self, x):
        return torch.sigmoid(x @ self.w)

    def from_aus(self, aus, x):
        self.seen.append(aus)
        return aus @ self.v


def test_do_replaces_one_au_of_the_layer_and_nothing_else():
    from heads.faithfulness import do

    torch.manual_seed(0)
    model = LinearReasoner(torch.randn(5, 4), torch.randn(4, 3))
    x = torch.randn(6, 5)
    a = model.au_layer(x)
    logits = do(model, x, 2, 1.0)
    seen = model.seen[-1]
    assert torch.equal(seen[:, 2], torch.ones(6)) and torch.equal(seen[:, [0, 1, 3]], a[:, [0, 1, 3]])
    torch.testing.assert_close(logits, seen @ model.v)
    assert not torch.equal(model.au_layer(x), seen)  # the model's own layer is untouched


def test_invoked_aus_are_those_the_class_map_uses_and_agreement_by_hand():
    from heads.faithfulness import agreement, effects, invoked

    # class 0 reads AU0 (+), class 1 reads AU1 (+) and AU2 (−); AU3 is read by nobody
    v = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, -3.0], [0.0, 0.0]])
    model = LinearReasoner(torch.randn(5, 4), v)
    x = torch.randn(40, 5)
    labels = torch.arange(40) % 2
    found = invoked(effects(model, x), labels, 2, threshold=0.1)
    assert found.tolist() == [[True, True, True, False], [True, True, True, False]]  # softmax couples the classes
    structure = torch.tensor([[1, 0, 0, 0], [0, 1, -1, 0]])
    per_class, mean = agreement(found, structure)
    # class 0: found {0,1,2}, causal {0}: F1 = 2·1/(3+1); class 1: {0,1,2} vs {1,2}: 2·2/(3+2)
    np.testing.assert_allclose(per_class.numpy(), [0.5, 0.8])
    assert mean == pytest.approx(0.65)
    jaccard, _ = agreement(found, structure, "jaccard")
    np.testing.assert_allclose(jaccard.numpy(), [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="f1 or jaccard"):
        agreement(found, structure, "dice")


def test_the_faithfulness_loss_by_hand():
    from heads.faithfulness import faithfulness_loss

    # one sample of class 1; effects on class 1 of AU0..AU2: 0.05, 0.4, −0.1; G[1] = (0, +1, −1)
    effect = torch.zeros(1, 3, 2)
    effect[0, :, 1] = torch.tensor([0.05, 0.4, -0.1])
    structure = torch.tensor([[1, 0, 0], [0, 1, -1]])
    loss = faithfulness_loss(effect, torch.tensor([1]), structure, margin=0.3)
    # causal: AU1 max(0, 0.3 − 0.4) = 0, AU2 max(0, 0.3 − 0.1) = 0.2 → mean 0.1; irrelevant AU0: |0.05|
    assert float(loss) == pytest.approx(0.1 + 0.05)
    assert float(faithfulness_loss(effect, torch.tensor([-1]), structure, 0.3)) == 0.0


def test_the_rationale_orders_aus_by_evidence_and_an_ablated_au_leaves_it():
    from heads.faithfulness import rationale_audit, verbalise

    names = ["AU6", "AU12", "AU4"]
    descriptions = {"AU6": "Cheek Raiser", "AU12": "Lip Corner Puller", "AU4": "Brow Lowerer"}
    weights = torch.tensor([1.0, 2.0, -1.5])  # toward happiness
    activation = torch.tensor([0.9, 0.8, 0.7])
    text, mentioned = verbalise(activation, weights, names, descriptions, "happiness")
    assert text == "AU12 lip corner puller and AU6 cheek raiser → happiness" and mentioned == ["AU12", "AU6"]
    for i, name in enumerate(names[:2]):
        ablated = activation.clone()
        ablated[i] = 0.0
        assert name not in verbalise(ablated, weights, names, descriptions, "happiness")[1]
    assert verbalise(torch.zeros(3), weights, names, descriptions, "neutral")[0] == "no AU evidence → neutral"
    # the audit: the class map reads AU0 strongly and AU1 not at all
    model = LinearReasoner(torch.eye(3), torch.tensor([[4.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    x = torch.full((1, 3), 3.0)  # every AU on
    assert rationale_audit(model, x, [[0, 1]], threshold=0.05) == 0.5


def test_the_pain_structure_follows_pspi_and_structures_become_matrices(tmp_path):
    from stages.faithfulness_structures import load_structure, prototype_structure, pspi, structure_matrix

    pain = load_structure()
    assert pain == {"pain": {f"AU{a}": 1 for a in (4, 6, 7, 9, 10, 43)}}
    assert pspi({4: 3, 6: 2, 7: 4, 9: 1, 10: 0, 43: 1}) == 3 + 4 + 1 + 1
    assert pspi({12: 5}) == 0 and pspi({4: 5, 6: 5, 10: 5, 43: 1}) == 16
    g = structure_matrix({**pain, **prototype_structure()}, ["pain", "happiness"], ["AU4", "AU6", "AU12"])
    assert g.tolist() == [[1, 1, 0], [0, 1, 1]]
    bad = tmp_path / "g.csv"
    bad.write_text("class,au,sign\npain,AU4,2\n")
    with pytest.raises(ValueError, match="g.csv:2"):
        load_structure(bad)
