"""FAUD-CLIP's pieces: tree attention and the AU losses, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heads.losses import asymmetric_au_loss, dice_au_loss, occurrence_weights
from heads.tree_attention import TreeAttention, children, pool_pyramid


def test_the_pyramid_averages_2x2_regions_and_an_odd_sides_last_region_averages_what_it_covers():
    x = torch.arange(9.0).view(1, 9, 1)  # a 3 × 3 grid 0 … 8
    (_, fine), (coarse, shape) = pool_pyramid(x, (3, 3), 2)
    assert fine == (3, 3) and shape == (2, 2)
    assert coarse.flatten().tolist() == [(0 + 1 + 3 + 4) / 4, (2 + 5) / 2, (6 + 7) / 2, 8.0]
    index, valid = children(torch.tensor([3]), (2, 2), (3, 3))  # region (1, 1): only token (2, 2) exists
    assert index[valid].tolist() == [8] and valid.sum() == 1
    with pytest.raises(ValueError, match="not a 3 × 4 grid"):
        pool_pyramid(x, (3, 4), 2)


def test_one_level_covering_every_region_is_plain_multi_head_attention():
    torch.manual_seed(0)
    tree = TreeAttention(16, heads=2, levels=1, top_k=100)
    queries, tokens = torch.randn(2, 5, 16), torch.randn(2, 12, 16)
    out, maps = tree(queries, tokens, (3, 4), maps=True)
    q = tree._split(tree.q(queries))
    k, v = (tree._split(t) for t in tree.kv(tokens).chunk(2, -1))
    expected = tree.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps, torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1), atol=1e-6, rtol=1e-5)


def _identity_attention(levels: int, top_k: int) -> TreeAttention:
    """One head of width 2 whose projections are the identity: queries and keys are the inputs."""
    tree = TreeAttention(2, heads=1, levels=levels, top_k=top_k)
    with torch.no_grad():
        for layer in (tree.q, tree.out):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        tree.kv.weight.copy_(torch.cat([torch.eye(2), torch.eye(2)]))
        tree.kv.bias.zero_()
    return tree


def test_top_k_descends_only_into_the_chosen_regions_of_a_hand_made_score_map():
    # a 4 × 4 grid; the coarse region (1, 0) (rows 2–3, columns 0–1) holds the strongest keys
    tokens = torch.zeros(1, 16, 2)
    strong = [8, 9, 12, 13]
    tokens[0, strong, 0] = torch.tensor([3.0, 4.0, 2.0, 5.0])
    tokens[0, 2, 0] = 4.5  # one strong token alone in region (0, 1): its region's mean stays low
    query = torch.tensor([[[1.0, 0.0]]])
    tree = _identity_attention(levels=2, top_k=1)
    with torch.no_grad():
        tree.level_logits.copy_(torch.tensor([30.0, -30.0]))  # the map is the fine level's alone
    _, maps = tree(query, tokens, (4, 4), maps=True)
    fine = maps[0, 0, 0]
    assert set(torch.nonzero(fine > 1e-6).flatten().tolist()) == set(strong)  # token 2 is never reached
    scores = tokens[0, strong, 0]
    torch.testing.assert_close(fine[strong], torch.softmax(scores / math.sqrt(2), 0))
    # the coarse level alone: every region, each spread over its 4 tokens
    with torch.no_grad():
        tree.level_logits.copy_(torch.tensor([-30.0, 30.0]))
    _, coarse = tree(query, tokens, (4, 4), maps=True)
    # region means (0,0) … (1,1): 0; token 2's 4.5 over 4; (3 + 4 + 2 + 5) / 4; 0
    region = torch.softmax(torch.tensor([0.0, 4.5 / 4, 14.0 / 4, 0.0]) / math.sqrt(2), 0)
    torch.testing.assert_close(coarse[0, 0, 0, 8], region[2] / 4)
    torch.testing.assert_close(coarse[0, 0, 0].sum(), torch.tensor(1.0))


def test_tree_attention_is_differentiable_where_it_attends_and_its_maps_sum_to_one():
    torch.manual_seed(0)
    tree = TreeAttention(16, heads=4, levels=3, top_k=2)
    queries = torch.randn(2, 12, 16, requires_grad=True)
    tokens = torch.randn(2, 49, 16, requires_grad=True)
    out, maps = tree(queries, tokens, (7, 7), maps=True)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 12))
    out.square().sum().backward()
    assert queries.grad.abs().sum() > 0 and tokens.grad.abs().sum() > 0 and tree.level_logits.grad.abs().sum() > 0


def test_occurrence_weights_asymmetric_and_dice_losses_by_hand():
    labels = torch.tensor([[1.0, 0.0, -1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, float("nan"), 0.0]])
    # occurrence rates over labelled rows: 3/4, 1/3, 1/3 → inverse 4/3, 3, 3 → normalised to mean 1
    inverse = np.array([4 / 3, 3.0, 3.0])
    w = occurrence_weights(labels)
    np.testing.assert_allclose(w.numpy(), inverse / inverse.mean(), rtol=1e-6)
    logits = torch.tensor([[2.0, -1.0, 0.3], [0.5, 1.5, -2.0], [-0.5, 0.0, 1.0], [1.0, 3.0, 0.2]])
    p = 1 / (1 + np.exp(-logits.numpy()))
    y = labels.numpy()
    ww = w.numpy()
    terms = []
    for i in range(4):
        for j in range(3):
            if np.isfinite(y[i, j]) and y[i, j] >= 0:
                t = y[i, j] * np.log(p[i, j]) + (1 - y[i, j]) * p[i, j] * np.log(1 - p[i, j])
                terms.append(-ww[j] * t)
    np.testing.assert_allclose(float(asymmetric_au_loss(logits, labels, w)), np.mean(terms), rtol=1e-5)
    dice = []
    for j in range(3):
        rows = [i for i in range(4) if np.isfinite(y[i, j]) and y[i, j] >= 0]
        yy, pp = y[rows, j], p[rows, j]
        dice.append(ww[j] * (1 - (2 * (yy * pp).sum() + 1) / ((yy**2).sum() + (pp**2).sum() + 1)))
    np.testing.assert_allclose(float(dice_au_loss(logits, labels, w)), np.mean(dice), rtol=1e-5)
    # an AU that never occurs takes the largest weight of those that do, not 1 / 0
    never = occurrence_weights(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.isfinite(never).all() and never[0] == never[1]
