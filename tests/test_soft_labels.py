import numpy as np
import pytest
import torch

from db3learn import distances_to_logits, distillation_loss, soft_labels


def test_inverse_mapping_is_the_papers_formula():
    D = np.array([[0.0, 2.0, 4.0, np.inf], [1.0, 0.5, 0.0, 0.25]])
    z = distances_to_logits(D, "inverse")
    np.testing.assert_allclose(z[0], [0.5 + 0.25, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(z[1], [1.0, 2.0, 1 + 2 + 4, 4.0])
    assert np.all(np.argmax(z, axis=1) == [0, 2])  # the own class always wins


def test_negative_mapping_and_softmax_by_hand():
    D = np.array([[0.0, 1.0, np.inf]])
    z = distances_to_logits(D, "negative")
    np.testing.assert_array_equal(z, [[0.0, -1.0, -np.inf]])
    T = 2.0
    p = soft_labels(z, T)
    e = np.exp([0.0, -0.5])
    np.testing.assert_allclose(p, [[e[0] / e.sum(), e[1] / e.sum(), 0.0]])


@pytest.mark.parametrize("mapping", ["negative", "inverse"])
def test_higher_temperature_is_softer(mapping):
    D = np.array([[0.0, 0.7, 1.3, 3.0]])
    z = distances_to_logits(D, mapping)
    cold, warm = soft_labels(z, 0.5), soft_labels(z, 5.0)
    assert cold[0, 0] > warm[0, 0] > 0.25
    np.testing.assert_allclose(cold.sum(1), 1)


def test_bad_distances_and_temperatures_are_rejected():
    with pytest.raises(ValueError, match=r"distances must be 2-D .* got shape \(3,\)"):
        distances_to_logits(np.zeros(3))
    with pytest.raises(ValueError, match="non-negative"):
        distances_to_logits(np.array([[0.0, -1.0]]))
    with pytest.raises(ValueError, match="mapping must be one of"):
        distances_to_logits(np.zeros((1, 2)), "log")
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        soft_labels(np.zeros((1, 2)), 0)


def test_distillation_loss_matches_a_hand_computation():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    z = torch.tensor([[0.0, -1.0, -3.0], [-2.0, 0.0, -float("inf")]])
    y = torch.tensor([0, 1])
    T, w = 2.0, 0.7
    ce = []
    kl = []
    for i in range(2):
        q_hard = np.exp(s[i].numpy()) / np.exp(s[i].numpy()).sum()
        ce.append(-np.log(q_hard[y[i]]))
        p = np.exp(z[i].numpy() / T) / np.exp(z[i].numpy() / T).sum()
        q = np.exp(s[i].numpy() / T) / np.exp(s[i].numpy() / T).sum()
        kl.append(sum(pk * np.log(pk / qk) for pk, qk in zip(p, q) if pk > 0))
    expected = np.mean(ce) + w * T**2 * np.mean(kl)
    got = distillation_loss(s, z, y, temperature=T, kd_weight=w)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    no_t2 = distillation_loss(s, z, y, temperature=T, kd_weight=w, temperature_squared=False)
    np.testing.assert_allclose(no_t2.item(), np.mean(ce) + w * np.mean(kl), rtol=1e-5)
    copycat = distillation_loss(s, z, y, temperature=T, kd_weight=0)
    np.testing.assert_allclose(copycat.item(), np.mean(ce), rtol=1e-5)


def test_median_nearest_distance_is_the_distillers_automatic_temperature(digits, svc):
    from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, median_nearest_distance

    X = digits[0][:120]
    d = DB3Distiller(svc, mixup=0, max_epochs=1, random_state=0).fit(X)  # the searches: soft labels
    D = DecisionBoundarySoftLabeler(svc, random_state=d.soft_labeler_.random_state).fit(X).boundary_distances(X)
    # the rule by hand: each row's smallest positive distance, then the median over rows
    by_hand = np.median([min(v for v in row if v > 0) for row in D])
    assert d.temperature_ == pytest.approx(by_hand)
    assert median_nearest_distance(D) == pytest.approx(by_hand)
    assert median_nearest_distance(D * 3.0) == pytest.approx(3.0 * by_hand)  # in the units of X


def test_median_nearest_distance_skips_rows_without_a_boundary():
    from db3learn import median_nearest_distance

    D = np.array([[0.0, 1.0, 4.0], [0.0, np.inf, np.inf], [2.0, 0.0, 3.0], [0.0, 5.0, 6.0]])
    assert median_nearest_distance(D) == 2.0  # rows 0, 2, 3: nearest 1, 2, 5
    assert median_nearest_distance(np.zeros((2, 3))) is None
    with pytest.raises(ValueError, match="2-D"):
        median_nearest_distance(np.zeros(3))
    with pytest.raises(ValueError, match="NaN or negative"):
        median_nearest_distance(np.array([[0.0, np.nan]]))
