import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler

from db3learn import DecisionBoundarySoftLabeler, Teacher
from db3learn._search import binary_search_distances, sample_distances, select_references


def _codes(model):
    return lambda Z: model.predict(Z)


def test_sd_equals_brute_force_nearest_reference(digits, svc):
    X, _, X_new, _ = digits
    refs, queries = X[:400], X_new[:60]
    ref_codes, y = svc.predict(refs), svc.predict(queries)
    pairs = select_references(queries, y, refs, ref_codes, 10, n_directions=1, selection="nearest", rng=None)
    D = sample_distances(queries, y, refs, *pairs, 10)
    brute = np.linalg.norm(queries[:, None, :] - refs[None, :, :], axis=2)  # (60, 400)
    for j in range(10):
        expected = brute[:, ref_codes == j].min(axis=1) if (ref_codes == j).any() else np.inf
        expected = np.where(y == j, 0.0, expected)
        np.testing.assert_allclose(D[:, j], expected, rtol=1e-12)


def test_sd_with_random_references_is_the_minimum_over_those_drawn(digits, svc):
    X, _, X_new, _ = digits
    refs, queries = X[:300], X_new[:20]
    ref_codes, y = svc.predict(refs), svc.predict(queries)
    pairs = select_references(queries, y, refs, ref_codes, 10, n_directions=5, selection="random", rng=np.random.default_rng(0))
    ps, pr, pc = pairs
    assert np.all(ref_codes[pr] == pc) and np.all(y[ps] != pc)
    assert np.all(np.bincount(ps * 10 + pc)[np.bincount(ps * 10 + pc) > 0] <= 5)
    D = sample_distances(queries, y, refs, *pairs, 10)
    brute_nearest = sample_distances(queries, y, refs, *select_references(queries, y, refs, ref_codes, 10, n_directions=1, selection="nearest", rng=None), 10)
    assert np.all(D >= brute_nearest - 1e-12)


def test_bd_points_found_are_confirmed_by_a_query(digits, svc):
    X, _, X_new, _ = digits
    refs, queries = X[:500], X_new[:40]
    ref_codes, y = svc.predict(refs), svc.predict(queries)
    pairs = select_references(queries, y, refs, ref_codes, 10, n_directions=4, selection="nearest", rng=None)
    D, best, t_hi, spent = binary_search_distances(_codes(svc), queries, y, refs, *pairs, 10, tol=1e-3)
    ps, pr, pc = pairs
    found = best >= 0
    assert found.sum() == np.isfinite(D).sum() - len(queries)  # every finite off-class entry has a pair
    p = best[found]
    points = queries[ps[p]] + t_hi[p][:, None] * (refs[pr[p]] - queries[ps[p]])
    np.testing.assert_array_equal(svc.predict(points), pc[p])  # each point is of its target class
    np.testing.assert_allclose(np.linalg.norm(points - queries[ps[p]], axis=1), D[found], rtol=1e-9)
    sd = sample_distances(queries, y, refs, *pairs, 10)
    assert np.all(D <= sd + 1e-12)  # never worse than the references themselves
    assert np.all(D[np.arange(40), y] == 0)


def _binary_teacher():
    X, y = make_classification(n_samples=400, n_features=2, n_redundant=0, n_informative=2, n_clusters_per_class=1, random_state=3)
    X = MinMaxScaler().fit_transform(X)
    return X, LogisticRegression().fit(X, y)


def test_bd_on_a_binary_linear_teacher_is_close_to_the_exact_distance():
    X, lr = _binary_teacher()
    w, b = lr.coef_[0], lr.intercept_[0]
    labeler = DecisionBoundarySoftLabeler(lr, n_directions=50, tol=1e-6).fit(X)
    D = labeler.boundary_distances(X[:100])
    y = lr.predict(X[:100])
    estimate = D[np.arange(100), 1 - y]
    exact = np.abs(X[:100] @ w + b) / np.linalg.norm(w)
    assert np.all(estimate >= exact * (1 - 1e-6))
    ratio = estimate / exact
    assert np.median(ratio) < 1.02
    assert np.quantile(ratio, 0.9) < 1.15


def _exact_targeted_distance(x, W, c, j):
    """min ||z - x|| s.t. class j has the largest score (W z + c), a small QP."""
    others = [k for k in range(len(W)) if k != j]
    A = np.array([W[j] - W[k] for k in others])
    bvec = np.array([c[j] - c[k] for k in others])
    res = minimize(
        lambda z: 0.5 * np.sum((z - x) ** 2),
        x,
        jac=lambda z: z - x,
        constraints=[{"type": "ineq", "fun": lambda z: A @ z + bvec, "jac": lambda z: A}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert res.success
    return np.linalg.norm(res.x - x)


def test_bd_on_a_multiclass_linear_teacher_upper_bounds_the_qp_distance():
    X, y = load_iris(return_X_y=True)
    X = MinMaxScaler().fit_transform(X)
    lr = LogisticRegression(max_iter=1000).fit(X, y)
    labeler = DecisionBoundarySoftLabeler(lr, n_directions=100, tol=1e-6).fit(X)
    rows = np.arange(0, 150, 5)
    D = labeler.boundary_distances(X[rows])
    own = lr.predict(X[rows])
    ratios = []
    for i, x in enumerate(X[rows]):
        for j in range(3):
            if j == own[i]:
                continue
            exact = _exact_targeted_distance(x, lr.coef_, lr.intercept_, j)
            assert D[i, j] >= exact * (1 - 1e-4)
            ratios.append(D[i, j] / exact)
    assert np.median(ratios) < 1.25


def test_bd_honours_the_per_sample_budget(digits, svc):
    X, _, X_new, _ = digits
    refs, queries = X[:500], X_new[:30]
    ref_codes, y = svc.predict(refs), svc.predict(queries)
    pairs = select_references(queries, y, refs, ref_codes, 10, n_directions=5, selection="nearest", rng=None)
    asked = []

    def query(Z):
        asked.append(len(Z))
        return svc.predict(Z)

    D_full, _, _, spent_full = binary_search_distances(query, queries, y, refs, *pairs, 10, tol=1e-3)
    assert sum(asked) == spent_full.sum()
    asked.clear()
    D_cap, _, _, spent_cap = binary_search_distances(query, queries, y, refs, *pairs, 10, tol=1e-3, max_queries_per_sample=60)
    assert sum(asked) == spent_cap.sum()
    assert spent_cap.max() <= 60
    assert spent_full.min() > 60  # the cap really bit
    assert np.all(D_cap >= D_full - 1e-12)  # fewer queries, never a smaller (unconfirmed) distance


def test_labeler_budget_counts_real_queries(digits, svc):
    X, _, X_new, _ = digits
    from .conftest import CountingModel

    model = CountingModel(svc)
    labeler = DecisionBoundarySoftLabeler(Teacher(model), max_queries_per_sample=50).fit(X[:300])
    before = model.rows
    labeler.boundary_distances(X_new[:20])
    assert model.rows - before <= 20 * (50 + 1)  # +1: labelling the sample itself
