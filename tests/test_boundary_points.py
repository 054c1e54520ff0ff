"""Boundary points (the search's confirmed points across each sample's nearest boundary) and the boundary term."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, KDStudent, Teacher, boundary_loss
from db3learn.models import MLP

from .conftest import CountingModel


@pytest.fixture(scope="module")
def logreg(digits):
    X, y, _, _ = digits
    return LogisticRegression(max_iter=2000).fit(X, y)


@pytest.mark.parametrize("method", ["bd", "mbd", "hsj"])
def test_points_are_answered_with_the_nearest_class_at_its_distance_and_cost_nothing(digits, logreg, method):
    X = digits[0][:40]
    model = CountingModel(logreg)
    lab = DecisionBoundarySoftLabeler(
        Teacher(model), method=method, n_directions=3, max_queries_per_sample=1500, random_state=0
    )
    lab.fit(digits[0][:300])
    D = lab.boundary_distances(X)
    rows = model.rows
    points, nearest = lab.boundary_points(X)
    assert model.rows == rows  # the distances' search already found them
    assert points.shape == X.shape and points.dtype == X.dtype and nearest.dtype == np.int64
    own = logreg.predict(X)
    masked = np.where(D > 0, D, np.inf)
    np.testing.assert_array_equal(nearest, masked.argmin(axis=1))
    assert (nearest != np.searchsorted(lab.classes_, own)).all()
    np.testing.assert_array_equal(logreg.predict(points), lab.classes_[nearest])  # across the boundary
    np.testing.assert_allclose(np.linalg.norm(points - X, axis=1), masked.min(axis=1), rtol=1e-9)
    # near the boundary: the teacher's two scores nearly tie there, unlike at the samples
    f = logreg.decision_function
    i = np.arange(len(X))
    at_point = np.abs(f(points)[i, nearest] - f(points)[i, np.searchsorted(lab.classes_, own)])
    at_sample = np.abs(f(X)[i, nearest] - f(X)[i, np.searchsorted(lab.classes_, own)])
    assert np.median(at_point) < 0.05 * np.median(at_sample)


def test_points_first_then_distances_search_once_and_agree_with_a_fresh_labeler(digits, logreg):
    X = digits[0][:30]
    model = CountingModel(logreg)
    lab = DecisionBoundarySoftLabeler(Teacher(model), n_directions=3, random_state=0).fit(digits[0][:300])
    points, nearest = lab.boundary_points(X)
    rows = model.rows
    D = lab.boundary_distances(X)
    assert model.rows == rows
    other = DecisionBoundarySoftLabeler(Teacher(logreg), n_directions=3, random_state=0).fit(digits[0][:300])
    np.testing.assert_array_equal(other.boundary_distances(X), D)
    p2, n2 = other.boundary_points(X)
    np.testing.assert_array_equal(p2, points)
    np.testing.assert_array_equal(n2, nearest)


@pytest.mark.parametrize("method", ["sd", "plane"])
def test_methods_without_a_queried_boundary_point_say_so(digits, logreg, method):
    lab = DecisionBoundarySoftLabeler(Teacher(logreg), method=method, n_directions=3, random_state=0).fit(
        digits[0][:100]
    )
    with pytest.raises(ValueError, match="method='bd'"):
        lab.boundary_points(digits[0][:5])


def test_boundary_loss_by_hand_and_zero_at_a_tie():
    logits = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 5.0]], requires_grad=True)
    own, other = torch.tensor([1, 0]), torch.tensor([0, 1])
    T = 4.0
    loss = boundary_loss(logits, own, other, temperature=T)
    assert loss.item() == pytest.approx(T**2 * ((2.0 / T) ** 2 + 0.0) / 2)
    assert boundary_loss(logits, own, other, temperature=T, temperature_squared=False).item() == pytest.approx(
        (2.0 / T) ** 2 / 2
    )
    loss.backward()
    # only the two logits of each point move, toward each other; a tied point pulls on nothing
    np.testing.assert_allclose(logits.grad.numpy(), [[-2.0, 2.0, 0.0], [0.0, 0.0, 0.0]])


def test_student_boundary_term_pulls_its_logits_together_at_the_points(digits, logreg):
    X = digits[0][:200].astype(np.float32)
    lab = DecisionBoundarySoftLabeler(Teacher(logreg), n_directions=3, random_state=0).fit(X)
    hard = lab.reference_labels_
    target = np.column_stack([hard, -lab.boundary_distances(X)]).astype(np.float32)
    points, nearest = lab.boundary_points(X)
    boundary = (points.astype(np.float32), hard, nearest)

    def margins(weight):
        torch.manual_seed(0)
        net = KDStudent(
            MLP,
            module__n_features=64,
            module__n_classes=10,
            temperature=0.5,
            boundary_weight=weight,
            max_epochs=30,
            batch_size=32,
            lr=1e-3,
            optimizer=torch.optim.Adam,
            classes=list(range(10)),
        )
        net.fit(X, target, boundary=boundary)
        z = net.forward(points.astype(np.float32)).numpy()
        i = np.arange(len(X))
        return np.abs(z[i, hard] - z[i, nearest])

    assert np.median(margins(3.0)) < 0.5 * np.median(margins(0.0))


def test_student_rejects_mismatched_boundary_arrays(digits):
    X = digits[0][:20].astype(np.float32)
    net = KDStudent(
        MLP, module__n_features=64, module__n_classes=10, boundary_weight=1.0, max_epochs=1, classes=list(range(10))
    )
    y = np.zeros((20, 11), dtype=np.float32)
    with pytest.raises(ValueError, match="as many points"):
        net.fit(X, y, boundary=(X[:5], np.zeros(5), np.zeros(4)))
    with pytest.raises(ValueError, match="shape"):
        net.fit(X, y, boundary=(X[:5, :10], np.zeros(5), np.zeros(5)))


def test_distiller_default_weight_follows_the_method(digits, logreg):
    X = digits[0][:150]
    common = dict(max_epochs=3, random_state=0)
    bd = DB3Distiller(logreg, soft_labeler=DecisionBoundarySoftLabeler(n_directions=3), **common).fit(X)
    assert bd.boundary_weight_ == pytest.approx(0.3) and bd.student_.boundary_weight == pytest.approx(0.3)
    assert bd.student_.boundary_[0].shape == (len(X), X.shape[1])
    sd = DB3Distiller(logreg, soft_labeler=DecisionBoundarySoftLabeler(method="sd"), **common).fit(X)
    assert sd.boundary_weight_ == 0.0 and sd.student_.boundary_ is None
    copy = DB3Distiller(logreg, kd_weight=0, **common).fit(X)
    assert copy.boundary_weight_ == 0.0
    off = DB3Distiller(
        logreg, soft_labeler=DecisionBoundarySoftLabeler(n_directions=3), boundary_weight=0, **common
    ).fit(X)
    assert off.student_.boundary_ is None
    with pytest.raises(ValueError, match="method='bd'"):
        DB3Distiller(logreg, soft_labeler=DecisionBoundarySoftLabeler(method="sd"), boundary_weight=0.3, **common).fit(
            X
        )
    model = CountingModel(logreg)
    with pytest.raises(ValueError, match="method='bd'"):
        DB3Distiller(
            model, soft_labeler=DecisionBoundarySoftLabeler(method="plane"), boundary_weight=0.3, **common
        ).fit(X)
    assert model.rows == len(X)  # it says so before plane's search is paid for: only the labels were asked


def test_boundary_term_changes_the_student_and_stays_reproducible(digits, logreg):
    X, _, X_test, _ = digits
    lab = DecisionBoundarySoftLabeler(n_directions=3)
    fits = [
        DB3Distiller(logreg, soft_labeler=lab, boundary_weight=w, max_epochs=20, random_state=0).fit(X[:200])
        for w in (0.3, 0.3, 0)
    ]
    p = [f.predict_proba(X_test) for f in fits]
    np.testing.assert_array_equal(p[0], p[1])
    assert not np.allclose(p[0], p[2])


def test_a_budget_that_stops_a_bracket_early_gives_no_point_for_that_sample(digits, logreg):
    X = digits[0][:60]
    lab = DecisionBoundarySoftLabeler(Teacher(logreg), n_directions=3, max_queries_per_sample=150, random_state=0).fit(
        digits[0][:300]
    )
    D = lab.boundary_distances(X)
    points, nearest = lab.boundary_points(X)
    stopped = nearest < 0
    assert 0 < stopped.sum() < len(X)  # 150 queries for 9 classes x 3 directions of 10 steps: few resolve
    np.testing.assert_array_equal(points[stopped], X[stopped])
    kept = ~stopped
    np.testing.assert_array_equal(logreg.predict(points[kept]), lab.classes_[nearest[kept]])
    # a resolved point is within the tolerance (1e-3 of a segment) of the boundary: its teacher scores nearly tie
    f = logreg.decision_function(points[kept])
    own = np.searchsorted(lab.classes_, logreg.predict(X[kept]))
    gap = np.abs(f[np.arange(kept.sum()), nearest[kept]] - f[np.arange(kept.sum()), own])
    assert np.max(gap) < 0.05 * np.median(np.abs(logreg.decision_function(X[kept]).max(axis=1)))
    assert np.isfinite(D).all()
