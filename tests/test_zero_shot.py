import re

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from db3learn import (
    ClassCoverageWarning,
    DB3Distiller,
    DecisionBoundarySoftLabeler,
    Teacher,
    TorchTeacher,
    ZeroShotTransferSet,
)
from db3learn.models import MLP

from .conftest import CountingModel


@pytest.fixture(scope="module")
def wine_teacher():
    X, y = load_wine(return_X_y=True)
    return X, make_pipeline(StandardScaler(), SVC()).fit(X, y)


@pytest.fixture(scope="module")
def image_teacher():
    """A small PyTorch MLP trained on the 8x8 digits in [0, 1]."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    torch.manual_seed(0)
    module = MLP(64, 10, hidden_units=(64,))
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(Xt), yt).backward()
        opt.step()
    return X, y, module.eval()


def _ranges(X):
    return (X.min(axis=0), X.max(axis=0))


def test_tabular_teacher_every_sample_keeps_its_class_inside_the_range(wine_teacher):
    X, teacher = wine_teacher
    low, high = _ranges(X)
    gen = ZeroShotTransferSet(teacher, n_samples_per_class=15, n_iter=4, feature_range=(low, high), random_state=0)
    Xp, yp = gen.fit_resample()
    assert Xp.shape == (45, 13) and Xp.dtype == np.float32
    np.testing.assert_array_equal(yp, gen.labels_)
    np.testing.assert_array_equal(teacher.predict(Xp), yp)  # no sample changed its teacher label
    assert np.all(Xp >= low.astype(np.float32) - 1e-6) and np.all(Xp <= high.astype(np.float32) + 1e-6)
    assert gen.n_samples_per_class_ == {0: 15, 1: 15, 2: 15}
    assert gen.n_features_in_ == 13


def test_samples_move_away_from_the_boundaries(wine_teacher):
    from db3learn import DecisionBoundarySoftLabeler

    X, teacher = wine_teacher
    still = ZeroShotTransferSet(
        teacher, n_samples_per_class=15, n_iter=0, feature_range=_ranges(X), random_state=0
    ).fit()
    moved = ZeroShotTransferSet(
        teacher, n_samples_per_class=15, n_iter=8, feature_range=_ranges(X), random_state=0
    ).fit()
    labeler = DecisionBoundarySoftLabeler(teacher, n_directions=5).fit(X)

    def margin(S):
        D = labeler.boundary_distances(S.astype(np.float64))
        D[D == 0] = np.inf
        return np.median(D.min(axis=1))

    assert margin(moved.samples_) > 1.2 * margin(still.samples_)


def test_budget_is_honoured_and_counted(wine_teacher):
    X, teacher = wine_teacher
    model = CountingModel(teacher)
    gen = ZeroShotTransferSet(
        Teacher(model), n_samples_per_class=30, n_iter=40, max_queries=5000, feature_range=_ranges(X), random_state=0
    )
    gen.fit()
    assert gen.n_queries_ == model.rows <= 5000
    assert model.rows > 5000 - 90 * 20  # it spent the budget, but for less than its largest batch


def test_deterministic_and_clone(wine_teacher):
    X, teacher = wine_teacher
    gen = ZeroShotTransferSet(teacher, n_samples_per_class=10, n_iter=3, feature_range=_ranges(X), random_state=3)
    a = clone(gen).fit_resample()
    b = clone(gen).fit_resample()
    np.testing.assert_array_equal(a[0], b[0])
    c = clone(gen).set_params(random_state=4).fit_resample()
    assert not np.array_equal(a[0], c[0])
    assert clone(gen).get_params()["teacher"] is teacher


def test_x_gives_shape_and_range(wine_teacher):
    X, teacher = wine_teacher
    gen = ZeroShotTransferSet(teacher, n_samples_per_class=5, n_iter=1, random_state=0)
    # one global range over features of such different scales reaches one class only: a clear error
    with pytest.raises(ValueError, match=r"the teacher answered class 1 to all [\d,]+ rows asked"):
        gen.fit(X)
    assert gen.n_features_in_ == 13
    np.testing.assert_array_equal(gen.feature_range_[0], np.full(13, X.min()))
    np.testing.assert_array_equal(gen.feature_range_[1], np.full(13, X.max()))


def test_clear_error_without_shape(wine_teacher):
    _, teacher = wine_teacher
    with pytest.raises(ValueError, match=r"needs the input shape: pass X .* or n_features=..., input_shape=..."):
        ZeroShotTransferSet(teacher).fit()
    with pytest.raises(ValueError, match=r"n_features=5 does not match input_shape=\(2, 2\) \(4 features\)"):
        ZeroShotTransferSet(teacher, n_features=5, input_shape=(2, 2)).fit()


def test_image_teacher_reaches_every_class(image_teacher):
    X, y, module = image_teacher
    teacher = TorchTeacher(module)
    gen = ZeroShotTransferSet(
        teacher,
        n_samples_per_class=10,
        n_iter=5,
        input_shape=(1, 8, 8),
        feature_range=(0.0, 1.0),
        max_noise_draws=4000,
        random_state=0,
    )
    with _maybe_warns():
        Xp, yp = gen.fit_resample()
    assert Xp.shape[1] == 64
    np.testing.assert_array_equal(teacher.predict(Xp), yp)
    assert len(np.unique(yp)) >= 8


class _maybe_warns:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", ClassCoverageWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def test_short_classes_are_named_in_a_warning():
    def teacher(Z):  # class 2 only in a tiny corner that noise almost never reaches
        Z = np.asarray(Z)
        out = (Z[:, 0] > 0.5).astype(int)
        out[(np.abs(Z[:, 1] - 0.3) < 0.01) & (np.abs(Z[:, 2] - 0.6) < 0.01)] = 2
        return out

    gen = ZeroShotTransferSet(
        Teacher(teacher, classes=[0, 1, 2]),
        n_samples_per_class=20,
        n_iter=2,
        n_features=3,
        max_noise_draws=500,
        random_state=0,
    )
    with pytest.warns(
        ClassCoverageWarning,
        match=r"wanted 20 pseudo samples per class but got \d+ of class 2 after [\d,]+ queries\. Raise max_queries .*"
        r"if the inputs are images, give input_shape=\(channels, height, width\)",
    ) as caught:
        gen.fit()
    assert [w.filename for w in caught] == [__file__]  # the warning points at the user's line, not at a library's
    assert gen.n_samples_per_class_[0] == 20 and gen.n_samples_per_class_[2] < 20


def test_distiller_trains_from_pseudo_samples_alone_or_added(wine_teacher):
    X, teacher = wine_teacher
    gen = ZeroShotTransferSet(n_samples_per_class=20, n_iter=3, feature_range=_ranges(X))
    alone = DB3Distiller(teacher, transfer_set=gen, max_epochs=5, random_state=0).fit(None)
    assert alone.transfer_set_.samples_.shape == (60, 13)
    assert len(alone.soft_labeler_.references_) == 60
    assert alone.n_features_in_ == 13
    added = DB3Distiller(teacher, transfer_set=gen, max_epochs=5, random_state=0).fit(X[:30])
    assert len(added.soft_labeler_.references_) == 30 + 60
    empty = DB3Distiller(teacher, transfer_set=gen, max_epochs=5, random_state=0).fit(np.empty((0, 13)))
    assert len(empty.soft_labeler_.references_) == 60
    with pytest.raises(ValueError, match="needs a transfer set: pass X"):
        DB3Distiller(teacher).fit(None)


@pytest.mark.parametrize("cache", [True, False])
def test_one_budget_bounds_the_whole_zero_shot_fit(wine_teacher, cache):
    """ZeroShotTransferSet(max_queries=B) given to the distiller bounds generation, labels and searches together."""
    X, model = wine_teacher
    gen = ZeroShotTransferSet(n_samples_per_class=20, n_iter=3, feature_range=_ranges(X))
    free = DB3Distiller(Teacher(model, cache=cache), transfer_set=gen, max_epochs=5, random_state=0).fit(None)
    natural = free.n_queries_  # what the fit spends without a budget
    B = natural // 2
    counted = CountingModel(model)
    # the teacher's own budget is B too: a query past it would raise QueryBudgetExceeded
    teacher = Teacher(counted, cache=cache, max_queries=B)
    bounded = DB3Distiller(teacher, transfer_set=clone(gen).set_params(max_queries=B), max_epochs=5, random_state=0)
    bounded.fit(None)
    assert bounded.n_queries_ == counted.rows <= B
    assert counted.rows > 0.9 * B  # the searches spent most of what generation left (cached answers are free)
    assert bounded.transfer_set_.n_queries_ <= 0.8 * B < counted.rows  # generation kept the soft labels' share
    assert bounded.soft_labeler_ is not None and bounded.kd_weight_ > 0
    # a budget the fit does not reach changes nothing
    roomy = DB3Distiller(
        Teacher(model, cache=cache),
        transfer_set=clone(gen).set_params(max_queries=4 * natural),
        max_epochs=5,
        random_state=0,
    ).fit(None)
    assert roomy.n_queries_ == natural
    np.testing.assert_array_equal(roomy.predict(X), free.predict(X))


def test_zero_shot_images_learn_mixtures_of_pseudo_samples_as_many_as_the_budget_leaves(image_teacher):
    X, _, module = image_teacher
    gen = ZeroShotTransferSet(
        n_samples_per_class=10, n_iter=2, input_shape=(1, 8, 8), feature_range=(0.0, 1.0), max_queries=8000
    )
    teacher = TorchTeacher(module, max_queries=8000)  # a query past the budget would raise
    with _maybe_warns():
        d = DB3Distiller(teacher, transfer_set=gen, max_epochs=5, random_state=0).fit(None)
    n, generated = len(d.transfer_set_.samples_), d.transfer_set_.n_queries_
    assert (8000 - generated) // n < 399  # what generation left a pseudo sample: fewer than the default 399 mixtures
    # it buys teacher-labelled mixtures of pseudo samples, as many per sample, and no search
    assert d.n_mixtures_ % n == 0 and d.soft_labeler_ is None and d.kd_weight_ == 0
    assert generated + d.n_mixtures_ > 8000 - 2 * n  # all of the budget but the labels and the rounding down
    assert d.n_queries_ == teacher.n_queries <= 8000
    assert 0.95 * d.n_mixtures_ < d.n_queried_rows_ <= d.n_mixtures_  # the student learns them (a repeated one once)
    # with the default epochs, images train for about 10,000 steps of 256 rows, zero-shot or real: on 200,000 rows (782
    # steps an epoch), 13 epochs
    default_epochs = d.set_params(max_epochs=None)
    zero_shot = default_epochs._build_student(64, 10, n_rows=200_000, queried=True)
    assert (zero_shot.max_epochs, zero_shot.batch_size) == (13, 256)
    real = DB3Distiller(TorchTeacher(module), max_epochs=1, random_state=0).fit(X[:100]).set_params(max_epochs=None)
    assert real._build_student(64, 10, n_rows=200_000, queried=True).max_epochs == 13
    # without a budget: the generator's rounds, then 399 mixtures per pseudo sample (400 queries with its label)
    with _maybe_warns():
        free = DB3Distiller(
            TorchTeacher(module), transfer_set=clone(gen).set_params(max_queries=None), max_epochs=2, random_state=0
        ).fit(None)
    assert free.n_mixtures_ == 399 * len(free.transfer_set_.samples_) and free.soft_labeler_ is None
    # a soft labeler of the user's: its searches, within what the budget leaves
    with _maybe_warns():
        searched = DB3Distiller(
            TorchTeacher(module, max_queries=8000),
            transfer_set=gen,
            soft_labeler=DecisionBoundarySoftLabeler(n_directions=2),
            max_epochs=2,
            random_state=0,
        ).fit(None)
    assert searched.n_mixtures_ == 0 and searched.soft_labeler_ is not None and searched.n_queries_ <= 8000


def test_a_zero_shot_budget_too_small_for_the_labels_is_refused_before_asking_them(wine_teacher):
    X, model = wine_teacher
    counted = CountingModel(model)
    gen = ZeroShotTransferSet(n_samples_per_class=20, n_iter=3, feature_range=_ranges(X), max_queries=400)
    expected = r"max_queries=400\) bounds the whole fit, and generation left (\d+) queries, fewer than the (\d+) that"
    with (
        pytest.warns(ClassCoverageWarning, match="after 256 queries"),  # the budget let generation draw one batch
        pytest.raises(
            ValueError, match=expected + r" the labels of the \2 rows may cost\. Raise max_queries"
        ) as caught,
    ):
        DB3Distiller(Teacher(counted), transfer_set=gen, max_epochs=5, random_state=0).fit(X)
    spent = counted.rows
    found = re.search(expected, str(caught.value))
    assert spent <= 320 and int(found.group(1)) == 400 - spent  # none of the labels was asked
    assert int(found.group(2)) > 178  # the rows given and the pseudo samples


def test_breast_cancer_per_feature_range():
    X, y = load_breast_cancer(return_X_y=True)
    teacher = make_pipeline(StandardScaler(), SVC()).fit(X, y)
    gen = ZeroShotTransferSet(teacher, n_samples_per_class=10, n_iter=2, feature_range=_ranges(X), random_state=0)
    Xp, yp = gen.fit_resample()
    assert np.bincount(yp).tolist() == [10, 10]
    assert np.all(Xp <= X.max(axis=0).astype(np.float32) + 1e-3)


def test_smooth_noise_for_images():
    from db3learn._zero_shot import _smooth_noise

    X = _smooth_noise(np.random.RandomState(0), 300, (1, 28, 28))
    assert X.shape == (300, 784) and X.min() >= 0 and X.max() <= 1
    assert (X == 0).mean() > 0.2  # thresholded: dark backgrounds, as digits have
    images = X.reshape(300, 28, 28)
    # smooth: neighbouring pixels are far closer than independent uniform ones (mean gap 1/3)
    assert np.abs(np.diff(images, axis=2)).mean() < 0.1
    gen = ZeroShotTransferSet(noise="paper", input_shape=(1, 28, 28))
    gen.input_shape_ = (1, 28, 28)  # as fit sets it
    paper = gen._noise(np.random.RandomState(0), 100, 784)
    assert np.abs(np.diff(paper.reshape(100, 28, 28), axis=2)).mean() > 0.1


@pytest.mark.parametrize(
    ("n_features", "per_feature", "expected"),
    [
        (784, False, (1, 28, 28)),
        (256, False, (1, 16, 16)),
        (3072, False, (3, 32, 32)),
        (64, False, None),  # 8 x 8: too small for the smooth noise's 14 x 14 layer to mean anything
        (784, True, None),  # a range per feature: a table
        (785, False, None),
    ],
)
def test_image_shape_inferred_from_the_width(n_features, per_feature, expected):
    from db3learn._zero_shot import _inferred_image_shape

    low, high = np.zeros(n_features), np.ones(n_features)
    if per_feature:
        high[0] = 2.0
    assert _inferred_image_shape(n_features, low, high) == expected


def test_a_flat_mnist_width_gets_smooth_noise_that_reaches_every_class():
    """n_features=784 and no input_shape: the noise takes the 28 x 28 layout, and reaches the classes flat noise misses.

    The teacher is a logistic regression on 2,000 real MNIST digits; the paper's noise reaches none of its 1s or 4s
    in 2,000 draws (and the warning names input_shape as the fix), the inferred layout's smooth noise every class.
    """
    from sklearn.linear_model import LogisticRegression

    from db3learn.datasets import load_mnist

    X, y = load_mnist()
    rows = np.random.RandomState(0).permutation(len(X))[:2000]
    teacher = LogisticRegression(max_iter=200).fit(X[rows], y[rows])
    settings = dict(n_samples_per_class=5, n_iter=0, n_features=784, max_noise_draws=2000, random_state=0)
    inferred = ZeroShotTransferSet(Teacher(teacher), **settings).fit()
    assert inferred.input_shape_ == (1, 28, 28)
    assert min(inferred.n_samples_per_class_.values()) == 5
    with pytest.warns(ClassCoverageWarning, match=r"got 0 of class \d.*give input_shape=\(channels, height, width\)"):
        flat = ZeroShotTransferSet(Teacher(teacher), noise="paper", **settings).fit()
    assert flat.input_shape_ is None
    assert min(flat.n_samples_per_class_.values()) == 0
