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
    assert float(value) == pytest.approx(0.3, abs=1e-6)
    value.sum().backward()
    assert logits.grad[0, 1] > 0 > logits.grad[0, 0]  # more mass on class 1 costs more
    # three classes on a line 0 — 1 — 2: half the mass shifts one place right, 0.5 × 2 however it is routed
    line = circumplex_costs(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
    shifted = transport_cost(torch.log(torch.tensor([[0.0001, 0.5, 0.4999]])), torch.tensor([[0.5, 0.5, 0.0]]), line)
    assert float(shifted) == pytest.approx(0.5 * 2 - 0.0001 * 2, abs=1e-3)
