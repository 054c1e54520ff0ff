import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler

from db3learn import DecisionBoundarySoftLabeler, Teacher
from db3learn._search import binary_search_distances, sample_distances, select_references

from .conftest import CountingModel


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
    pairs = select_references(
        queries, y, refs, ref_codes, 10, n_directions=5, selection="random", rng=np.random.default_rng(0)
    )
    ps, pr, pc = pairs
    assert np.all(ref_codes[pr] == pc) and np.all(y[ps] != pc)
    assert np.all(np.bincount(ps * 10 + pc)[np.bincount(ps * 10 + pc) > 0] <= 5)
    D = sample_distances(queries, y, refs, *pairs, 10)
    brute_nearest = sample_distances(
        queries,
        y,
        refs,
        *select_references(queries, y, refs, ref_codes, 10, n_directions=1, selection="nearest", rng=None),
        10,
    )
    assert np.all(D >= brute_nearest - 1e-12)


def test_bd_points_found_are_confirmed_by_a_query(digits, svc):
    X, _, X_new, _ = digits
    refs, queries = X[:500], X_new[:40]
    ref_codes, y = svc.predict(refs), svc.predict(queries)
    pairs = select_references(queries, y, refs, ref_codes, 10, n_directions=4, selection="nearest", rng=None)
    D, best, _, t_hi, spent = binary_search_distances(_codes(svc), queries, y, refs, *pairs, 10, tol=1e-3)
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
    X, y = make_classification(
        n_samples=400, n_features=2, n_redundant=0, n_informative=2, n_clusters_per_class=1, random_state=3
    )
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


def _exact_targeted_distance(x, W, c, j, bounds=None, ftol=1e-14):
    """min ||z - x|| s.t. class j has the largest score (W z + c), optionally inside ``bounds``: a small QP."""
    others = [k for k in range(len(W)) if k != j]
    A = np.array([W[j] - W[k] for k in others])
    bvec = np.array([c[j] - c[k] for k in others])
    res = minimize(
        lambda z: 0.5 * np.sum((z - x) ** 2),
        x,
        jac=lambda z: z - x,
        bounds=bounds,
        constraints=[{"type": "ineq", "fun": lambda z: A @ z + bvec, "jac": lambda z: A}],
        method="SLSQP",
        options={"ftol": ftol, "maxiter": 500},
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

    D_full, _, _, _, spent_full = binary_search_distances(query, queries, y, refs, *pairs, 10, tol=1e-3)
    assert sum(asked) == spent_full.sum()
    asked.clear()
    D_cap, _, _, _, spent_cap = binary_search_distances(
        query, queries, y, refs, *pairs, 10, tol=1e-3, max_queries_per_sample=60
    )
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


@pytest.fixture(scope="module")
def linear_digits():
    """A multinomial logistic-regression teacher on digits in [0, 1], and exact targeted distances."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    lr = LogisticRegression(max_iter=2000).fit(X[:1000], y[:1000])
    return X, lr


def _exact_in_box(lr, x, j):
    return _exact_targeted_distance(x, lr.coef_, lr.intercept_, j, bounds=[(0.0, 1.0)] * len(x), ftol=1e-12)


@pytest.mark.parametrize(
    "method, budget, median_bound",
    [("sd", None, None), ("bd", None, None), ("plane", None, 1.3), ("hsj", 300, 1.35), ("mbd", 20000, 1.05)],
)
def test_every_method_upper_bounds_the_exact_distance(linear_digits, method, budget, median_bound):
    X, lr = linear_digits
    labeler = DecisionBoundarySoftLabeler(
        lr, method=method, max_queries_per_pair=budget, feature_range=(0.0, 1.0), random_state=0
    )
    labeler.fit(X[:1000])
    samples = X[1000:1006]
    D = labeler.boundary_distances(samples)
    own = lr.predict(samples)
    ratios = np.array(
        [D[i, j] / _exact_in_box(lr, x, j) for i, x in enumerate(samples) for j in range(10) if j != own[i]]
    )
    assert ratios.min() >= 1 - 1e-6  # never below the exact distance
    if median_bound is not None:
        assert np.median(ratios) <= median_bound


def test_refining_methods_beat_bd_and_snapshots_do_not_increase(linear_digits):
    X, lr = linear_digits
    samples = X[1000:1004]
    bd = DecisionBoundarySoftLabeler(lr, method="bd").fit(X[:1000]).boundary_distances(samples)
    labeler = DecisionBoundarySoftLabeler(lr, method="mbd", max_queries_per_pair=3000, random_state=0).fit(X[:1000])
    snap = labeler.boundary_distance_snapshots(samples, snapshots=(250, 500, 1000, 2000, 3000))
    assert snap.shape == (4, 10, 5)
    assert np.all(np.diff(snap, axis=2) <= 1e-12)
    assert np.all(snap[..., -1] <= bd + 1e-12)
    off = bd > 0
    assert np.median(snap[..., -1][off] / bd[off]) < 0.9  # Sign-OPT really moved
    with pytest.raises(ValueError, match="Snapshots exist for method='mbd' or 'hsj', not 'bd'"):
        DecisionBoundarySoftLabeler(lr).fit(X[:50]).boundary_distance_snapshots(samples)


@pytest.mark.parametrize("method", ["bd", "plane", "mbd", "hsj"])
def test_budget_per_sample_is_honoured_and_reported(linear_digits, method):
    X, lr = linear_digits
    model = CountingModel(lr)
    labeler = DecisionBoundarySoftLabeler(Teacher(model), method=method, max_queries_per_sample=400, random_state=0)
    labeler.fit(X[:500])
    rows = model.rows
    D, queries = labeler.boundary_distances(X[1000:1010], return_queries=True)
    assert queries.max() <= 400
    assert model.rows - rows == queries.sum() + 10  # + one label per sample
    D2, queries2 = labeler.boundary_distances(X[1000:1010], return_queries=True)
    np.testing.assert_array_equal(D, D2)
    assert queries2.sum() == 0  # cached


@pytest.mark.parametrize("method", ["mbd", "hsj"])
def test_batched_and_one_at_a_time_agree_and_seeds_matter(linear_digits, method):
    X, lr = linear_digits
    samples = X[1000:1005]

    def labeler(seed):
        return DecisionBoundarySoftLabeler(Teacher(lr), method=method, max_queries_per_pair=600, random_state=seed).fit(
            X[:500]
        )

    batched = labeler(0).boundary_distances(samples)
    one_by_one = np.vstack([labeler(0).boundary_distances(samples[i : i + 1]) for i in range(len(samples))])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-12)
    np.testing.assert_array_equal(batched, labeler(0).boundary_distances(samples))
    assert not np.array_equal(batched, labeler(1).boundary_distances(samples))


def test_keyed_unit_vectors_are_unit_and_keyed():
    from db3learn._search import keyed_unit_vectors

    U = keyed_unit_vectors(np.array([1, 2, 1], dtype=np.uint64), 3, 50, 16)
    assert U.shape == (3, 50, 16)
    np.testing.assert_allclose(np.linalg.norm(U, axis=2), 1, rtol=1e-5)
    np.testing.assert_array_equal(U[0], U[2])
    assert not np.allclose(U[0], U[1])
    assert not np.allclose(U[0], keyed_unit_vectors(np.array([1], dtype=np.uint64), 4, 50, 16)[0])
    assert abs(U.mean()) < 0.02  # no bias in any direction


def test_random_references_do_not_depend_on_the_batch(digits, svc):
    """A sample's random references (and so its distances) are keyed by the sample, not drawn from a shared stream."""
    X = digits[0]
    labeler = DecisionBoundarySoftLabeler(
        Teacher(svc), n_directions=3, reference_selection="random", random_state=7
    ).fit(X[:400])
    batch = labeler.boundary_distances(X[400:440])
    labeler_again = DecisionBoundarySoftLabeler(
        Teacher(svc), n_directions=3, reference_selection="random", random_state=7
    ).fit(X[:400])
    alone = np.vstack([labeler_again.boundary_distances(X[i : i + 1]) for i in (405, 430, 439)])
    np.testing.assert_array_equal(alone, batch[[5, 30, 39]])
    other_seed = DecisionBoundarySoftLabeler(
        Teacher(svc), n_directions=3, reference_selection="random", random_state=8
    ).fit(X[:400])
    assert not np.array_equal(other_seed.boundary_distances(X[400:440]), batch)  # the seed does choose the references


def test_plane_fit_beats_bd_at_the_same_tolerance_and_needs_two_directions(linear_digits):
    """The plane search only ever lowers BD's distances; with one direction per class there is nothing to fit."""
    X, lr = linear_digits
    samples = X[1000:1008]

    def search(**params):
        model = CountingModel(lr)
        labeler = DecisionBoundarySoftLabeler(Teacher(model), feature_range=(0.0, 1.0), **params).fit(X[:1000])
        before = model.rows
        D, queries = labeler.boundary_distances(samples, return_queries=True)
        assert model.rows - before <= queries.sum() + len(samples)  # repeated points are answered from the cache
        return D, queries.sum()

    plane, plane_queries = search(method="plane")
    bd, bd_queries = search(method="bd", tol=1 / 64)
    assert np.all(plane <= bd)
    off = bd > 0
    assert np.mean(plane[off] < bd[off] * 0.99) > 0.5  # the normal estimate finds closer boundary points for most pairs
    assert np.median(plane[off] / bd[off]) < 0.97
    # plane resolves every direction (no pruning), then asks 6 grid points per (sample, class) and bisects 6 times
    # where one of them reached the class
    assert len(samples) * 9 * (10 * 6 + 6) <= plane_queries <= len(samples) * 9 * (10 * 6 + 12)
    assert bd_queries < plane_queries
    single, single_queries = search(method="plane", n_directions=1)
    single_bd, single_bd_queries = search(method="bd", n_directions=1, tol=1 / 64)
    np.testing.assert_array_equal(single, single_bd)
    assert single_queries == single_bd_queries == len(samples) * 9 * 6


def test_plane_batched_and_one_at_a_time_agree(linear_digits):
    X, lr = linear_digits
    samples = X[1000:1005]
    labeler = DecisionBoundarySoftLabeler(Teacher(lr), method="plane", feature_range=(0.0, 1.0)).fit(X[:500])
    batched = labeler.boundary_distances(samples)
    fresh = DecisionBoundarySoftLabeler(Teacher(lr), method="plane", feature_range=(0.0, 1.0)).fit(X[:500])
    one_by_one = np.vstack([fresh.boundary_distances(samples[i : i + 1]) for i in range(len(samples))])
    np.testing.assert_array_equal(batched, one_by_one)
