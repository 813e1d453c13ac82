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
    found = invoked(effects(model, x, on="probability"), labels, 2, threshold=0.1)
    assert found.tolist() == [[True, True, True, False], [True, True, True, False]]  # softmax couples the classes
    assert invoked(effects(model, x), labels, 2, threshold=0.1).tolist() == [
        [True, False, False, False],
        [False, True, True, False],
    ]  # on the logits each class invokes what its row of the map reads
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


def _rule_data(seed: int, n: int = 1500) -> tuple[torch.Tensor, torch.Tensor]:
    """Five AUs visible in the features; the class is anger when AU4 shows, else happiness when
    AU12 shows, else neutral (10 % of labels flipped at random); AU6 rides along with happiness
    (90 % of happy faces, 10 % of others) but the rule never reads it."""
    rng = np.random.default_rng(seed)
    a = (rng.random((n, 5)) < 0.3).astype(np.int64)
    happy = a[:, 4] == 1
    a[:, 3] = np.where(happy, rng.random(n) < 0.9, rng.random(n) < 0.1)
    y = np.where(a[:, 2] == 1, 2, np.where(happy, 1, 0))
    y = np.where(rng.random(n) < 0.1, rng.integers(0, 3, n), y)
    x = np.concatenate([2.0 * a + rng.normal(0, 0.8, (n, 5)), rng.normal(0, 1, (n, 10))], 1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(np.concatenate([a, y[:, None]], 1))


def test_the_faithfulness_objective_makes_the_reasoner_invoke_the_rule_and_a_permuted_rule_does_not_help():
    """Over 5 seeds: with the objective the AUs the reasoner invokes agree with the rule's (F1 over
    the classes the rule defines) far more than without it, AU detection does not drop by more
    than 0.03, and the same objective over a rule with permuted AU labels gains nothing."""
    from heads.facr import FacrConfig, FacrHead
    from heads.faithfulness import agreement, effects, invoked
    from heads.trainer import TrainConfig, evaluate, fit, predict

    names = ("AU1", "AU2", "AU4", "AU6", "AU12", "neutral", "happiness", "anger")
    rule = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 1, 0, 0]])
    permuted = torch.tensor([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    scores: dict[str, list[tuple[float, float]]] = {}
    for name, weight, structure in (("none", 0.0, rule), ("rule", 1.0, rule), ("permuted", 1.0, permuted)):
        for seed in range(5):
            x, y = _rule_data(seed)
            torch.manual_seed(seed)
            config = FacrConfig(label_names=names, faithfulness_weight=weight, margin=1.0)
            head = FacrHead("au_fer", 15, 8, config, structure)
            train = TrainConfig(
                epochs=60, lr=1e-2, batch_size=64, warmup_epochs=0, patience=15, progress=False, seed=seed
            )
            fit(head, "au_fer", (x[:1000], y[:1000]), (x[1000:1250], y[1000:1250]), 8, train)
            with torch.no_grad():
                found = invoked(effects(head.eval(), x[1250:]), y[1250:, 5], 3, threshold=0.5)
            au_f1 = evaluate("au_fer", predict(head, x[1250:]), y[1250:].numpy(), 8, list(names))["mean_f1"]
            scores.setdefault(name, []).append((agreement(found, rule)[1], au_f1))
    mean = {k: np.mean(v, 0) for k, v in scores.items()}  # (agreement, AU F1); measured 0.47 / 1.00 / 0.33
    assert mean["rule"][0] > mean["none"][0] + 0.3, mean
    assert all(r[0] > n[0] for r, n in zip(scores["rule"], scores["none"]))  # every seed
    assert mean["permuted"][0] <= mean["none"][0] + 0.05, mean
    assert mean["rule"][1] >= mean["none"][1] - 0.03, mean
