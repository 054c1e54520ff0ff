"""Issue 17, hardening: answers that are not labels, one-class teachers, bad feature ranges, sparse rows."""

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from db3learn import (
    DB3Distiller,
    DecisionBoundarySoftLabeler,
    RemoteTeacher,
    Teacher,
    TeacherAnswerError,
    ZeroShotTransferSet,
)
from db3learn._teachers import _check_rows
from db3learn.serve import create_app

from .servers import thread_server


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y, LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X, LogisticRegression(max_iter=5000).fit(X, y)


class ServedProbability:
    """A fitted classifier served by mistake with ``predict_proba(X)[:, 1]`` as its predict."""

    def __init__(self, model):
        self.model = model
        self.n_features_in_ = model.n_features_in_

    def predict(self, X):
        return self.model.predict_proba(X)[:, 1]


class TypeFlipping:
    """A fitted classifier whose labels come back as strings on odd calls and integers on even ones."""

    def __init__(self, model):
        self.model = model
        self.n_features_in_ = model.n_features_in_
        self.calls = 0

    def predict(self, X):
        self.calls += 1
        labels = self.model.predict(X)
        return labels.astype(str) if self.calls % 2 else labels


# -- 8. one float per row is not a label ------------------------------------------------------------


def _expected_scores_words(proba):
    fractional = proba[proba != np.round(proba)]
    examples = ", ".join(str(v) for v in fractional[:3])
    return (
        f"non-integer values such as [{examples}] (dtype float64), which look like scores or probabilities "
        "(what predict_proba returns), not class labels"
    )


def test_a_predict_proba_column_is_refused_with_the_fix(cancer):
    X, model = cancer
    teacher = Teacher(lambda Z: model.predict_proba(Z)[:, 1])
    with pytest.raises(TeacherAnswerError) as info:
        teacher.predict(X[:40])
    message = str(info.value)
    assert message.startswith("The teacher must return one class label per row; it returned ")
    assert _expected_scores_words(model.predict_proba(X[:40])[:, 1]) in message
    assert "Return the model's predict(X) instead, or the class of highest score, " in message
    assert "model.classes_[model.predict_proba(X).argmax(axis=1)]" in message
    assert not teacher._answers and not teacher._labels  # not taken for 40 "classes"


def test_whole_number_floats_stay_labels_and_match_integers(iris):
    X, _, model = iris
    calls = []

    def teacher_fn(Z):
        calls.append(len(Z))
        labels = model.predict(Z)
        return labels.astype(np.float64) if len(calls) == 1 else labels  # floats first, then integers

    teacher = Teacher(teacher_fn)
    first = teacher.predict(X[::2])  # every class
    assert first.dtype == np.float64
    np.testing.assert_array_equal(first, model.predict(X[::2]))
    second = teacher.predict(X[1::2])  # integers for the same classes: the same (float) labels, as today
    assert second.dtype == np.float64
    np.testing.assert_array_equal(second, model.predict(X[1::2]))
    assert teacher._labels == [0.0, 1.0, 2.0] and all(isinstance(v, float) for v in teacher._labels)
    assert sum(calls) == teacher.n_queries == len(np.unique(X, axis=0))


def test_a_remote_predict_proba_column_gets_the_same_words(cancer):
    X, model = cancer
    with thread_server(create_app(ServedProbability(model), model_name="cancer")) as url:
        remote = RemoteTeacher(url, "cancer", protocol="v1", max_retries=0)
        with pytest.raises(TeacherAnswerError) as info:
            remote.predict(X[:40])
    message = str(info.value)
    words = _expected_scores_words(model.predict_proba(X[:40])[:, 1])  # as a local teacher's answer gets them
    assert message.startswith(
        f"Expected class labels; the predictions holds {words}. Serve the model's predict(X), or the class of "
        "highest score, not its scores. "
    )
    assert "The server answered '" in message  # quoted
    assert not remote._answers


# -- 9. labels of one type ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, what",
    [
        (
            lambda n: np.asarray([None, 1, "a"] * (n // 3), dtype=object),
            "an object array of NoneType, int, str values (e.g. None, 1, 'a')",
        ),
        (lambda n: [None, 1, "a"] * (n // 3), "an object array of NoneType, int, str values (e.g. None, 1, 'a')"),
        (lambda n: [1, "a", 2] * (n // 3), "a list of int, str values (e.g. 1, 'a')"),  # numpy would make them strings
        (
            lambda n: [True, 1, 0] * (n // 3),
            "a list of bool, int values (e.g. True, 1)",
        ),  # numpy would make them 1, 1, 0
    ],
    ids=["object-array", "list-with-None", "list-int-str", "list-bool-int"],
)
def test_labels_mixing_types_are_refused(iris, answer, what):
    X = iris[0][:6]
    teacher = Teacher(lambda Z: answer(len(Z)))
    with pytest.raises(TeacherAnswerError) as info:
        teacher.predict(X)
    assert str(info.value) == (
        "The teacher must return labels of one type, all numbers or all strings (or all booleans); it returned "
        f"{what}. Make it return one label per row, of one type, as a classifier's predict(X) does."
    )
    assert not teacher._answers


def test_labels_changing_type_between_batches_are_refused_and_earlier_ones_stay_cached(iris):
    X, _, model = iris
    flipping = TypeFlipping(model)
    teacher = Teacher(flipping.predict, batch_size=50)
    with pytest.raises(TeacherAnswerError) as info:
        teacher.predict(X)  # strings for rows 0-49, then integers for rows 50-99
    first, second = model.predict(X[:50]), model.predict(X[50:100])
    new = ", ".join(str(v) for v in np.unique(second)[:3])
    before = ", ".join(repr(v) for v in np.unique(first.astype(str)).tolist()[:3])
    assert str(info.value).startswith(
        f"The teacher answered integers ({new}) in this batch but strings ({before}) before. "
    )
    assert "make it return one type, e.g. np.asarray(model.predict(X)).astype(int) or .astype(str)" in str(info.value)
    assert flipping.calls == 2
    np.testing.assert_array_equal(teacher.predict(X[:50]), first.astype(str))  # cached: no new call
    assert flipping.calls == 2


def test_a_remote_teacher_changing_type_between_batches_is_refused(iris):
    X, _, model = iris
    flipping = TypeFlipping(model)
    with thread_server(create_app(flipping, model_name="iris")) as url:
        remote = RemoteTeacher(url, "iris", protocol="v2", batch_size=50, max_concurrency=1, max_retries=0)  # in order
        with pytest.raises(
            TeacherAnswerError, match=r"^The teacher answered integers \(.*\) in this batch but strings \('"
        ):
            remote.predict(X[:100])
        np.testing.assert_array_equal(remote.predict(X[:50]), model.predict(X[:50]).astype(str))  # cached


@pytest.mark.parametrize(
    "convert",
    [
        lambda y: y.astype(object),
        lambda y: y.astype(str).astype(object),
        lambda y: pd.Series(y).astype("string").to_numpy(),
    ],
    ids=["object-ints", "object-strings", "pandas-strings"],
)
def test_object_arrays_of_one_type_keep_working(iris, convert):
    X, _, model = iris
    expected = convert(model.predict(X)).tolist()
    teacher = Teacher(lambda Z: convert(model.predict(Z)), batch_size=40)
    assert teacher.predict(X).tolist() == expected
    assert teacher.n_queries == len(np.unique(X, axis=0))


def test_numpy_and_python_integers_are_one_type(iris):
    X, _, model = iris
    calls = []

    def teacher_fn(Z):
        calls.append(len(Z))
        labels = model.predict(Z)
        return labels if len(calls) % 2 else labels.tolist()  # int64 array, then a list of Python ints

    labels = Teacher(teacher_fn, batch_size=30).predict(X)
    np.testing.assert_array_equal(labels, model.predict(X))
    assert len(calls) == 5


def test_labels_of_another_type_than_the_classes_say_so(iris):
    X, _, model = iris
    teacher = Teacher(lambda Z: model.predict(Z).astype(str), classes=[0, 1, 2])
    with pytest.raises(TeacherAnswerError) as info:
        teacher.predict(X[:60])
    assert str(info.value).startswith(
        "The teacher returned labels ['0', '1'] outside its classes [0, 1, 2]. The teacher answers strings but "
        "the classes are integers. Pass classes=[...]"
    )


# -- 10. a teacher that answers one class ---------------------------------------------------------


@pytest.fixture(scope="module")
def constant_teacher(iris):
    X, y, _ = iris
    return DummyClassifier(strategy="constant", constant=2).fit(X, y)  # knows classes 0, 1, 2; answers 2


def test_distiller_refuses_a_teacher_that_answers_one_class(iris, constant_teacher):
    X = iris[0]
    n_distinct = len(np.unique(X, axis=0))  # iris has one duplicated row
    assert n_distinct == 149
    teacher = Teacher(constant_teacher)
    distiller = DB3Distiller(teacher, max_epochs=1, random_state=0)
    with pytest.raises(ValueError) as info:
        distiller.fit(X)
    assert str(info.value) == (
        "DB3Distiller: the teacher answered class 2 to all 150 rows of the transfer set (149 queries), so there is "
        "only one class to learn; a student needs at least two classes. The answers stay cached in the teacher. "
        "Give a transfer set on which the teacher answers at least two classes, or check that the teacher is the "
        "model you meant."
    )
    assert teacher.n_queries == 149  # the transfer set only: no boundary search was paid
    assert not hasattr(distiller, "student_")
    with pytest.raises(ValueError, match=r"to all 150 rows of the transfer set \(0 queries\)"):  # from the cache
        distiller.fit(X)
    assert teacher.n_queries == 149


def test_zero_shot_refuses_a_teacher_that_answers_one_class(iris, constant_teacher):
    X = iris[0]
    teacher = Teacher(constant_teacher)
    gen = ZeroShotTransferSet(
        teacher,
        n_samples_per_class=10,
        n_iter=2,
        n_directions=4,
        max_noise_draws=600,
        feature_range=(X.min(0), X.max(0)),
        random_state=0,
    )
    with pytest.raises(ValueError) as info:
        gen.fit()
    message = str(info.value)
    found = re.match(
        r"ZeroShotTransferSet: the teacher answered class 2 to all ([\d,]+) rows asked \(([\d,]+) queries\), ", message
    )
    assert found, message
    n_rows, n_queries = (int(g.replace(",", "")) for g in found.groups())
    assert n_queries == teacher.n_queries > 0 and n_rows >= n_queries
    assert "so the pseudo samples hold only one class; a student needs at least two classes to learn from." in message
    assert "give the teacher's real input range as feature_range" in message
    assert not hasattr(gen, "samples_")
    with pytest.raises(ValueError, match=rf"to all {n_rows:,} rows asked \(0 queries\)"):  # same seed: all cached
        gen.fit()


# -- 11. feature_range and sparse rows ------------------------------------------------------------


EXPECTED_RANGE = "expected (low, high) with finite low < high, each a float or an array of shape (4,)"


@pytest.mark.parametrize(
    "feature_range, got",
    [
        ((0.0, np.nan), "feature_range must be finite; got high=nan; "),
        ((-np.inf, 8.0), "feature_range must be finite; got low=-inf; "),
        (
            (0.0, np.array([8.0, 8.0, np.inf, 8.0])),
            "feature_range must be finite; got high holding [inf] at features [2]; ",
        ),
        (
            (np.array([0.0, 5.0, 0.0, 0.0]), 4.0),
            "feature_range must have low < high for every feature; got low [5.0] and high [4.0] at features [1]; ",
        ),
        ((np.zeros(3), 8.0), "feature_range's low has shape (3,), which does not fit 4 features; "),
        ((0.0, "eight"), "feature_range's high must be numbers; got 'eight'; "),
    ],
    ids=["nan", "-inf", "inf-in-array", "low-above-high", "wrong-shape", "not-numbers"],
)
def test_zero_shot_checks_feature_range_in_fit_before_asking(iris, feature_range, got):
    teacher = Teacher(iris[2])
    gen = ZeroShotTransferSet(
        teacher, n_samples_per_class=5, n_iter=1, n_features=4, feature_range=feature_range, random_state=0
    )
    with pytest.raises(ValueError) as info:
        gen.fit()
    assert str(info.value).startswith(got + EXPECTED_RANGE)
    assert teacher.n_queries == 0


@pytest.mark.parametrize("make", [sp.csr_matrix, sp.csr_array, sp.coo_matrix])
def test_check_rows_refuses_sparse_with_the_fix(iris, make):
    X = make(iris[0][:5])
    with pytest.raises(TypeError) as info:
        _check_rows(X)
    assert str(info.value) == (
        f"Teacher.predict takes a dense array or a DataFrame; got a scipy.sparse {type(X).__name__} of shape (5, 4): "
        "convert it with X.toarray()."
    )


def test_check_rows_passes_arrays_and_frames(iris):
    X = iris[0][:5]
    frame = pd.DataFrame(X, columns=list("abcd"))
    assert _check_rows(frame) is frame
    rows = _check_rows(X.tolist())
    assert isinstance(rows, np.ndarray) and rows.shape == (5, 4)


def test_teacher_predict_refuses_sparse_with_the_fix(iris):
    """Passes once ``Teacher.predict`` starts with ``X = _check_rows(X)``."""
    teacher = Teacher(iris[2])
    with pytest.raises(
        TypeError, match=re.escape("got a scipy.sparse csr_matrix of shape (5, 4): convert it with X.toarray()")
    ):
        teacher.predict(sp.csr_matrix(iris[0][:5]))
    assert teacher.n_queries == 0


@pytest.mark.parametrize("make", [lambda t: DB3Distiller(t, max_epochs=1), lambda t: DecisionBoundarySoftLabeler(t)])
def test_estimators_refuse_sparse_clearly_already(iris, make):
    teacher = Teacher(iris[2])
    with pytest.raises(
        TypeError, match=re.escape("dense data is required. Use '.toarray()' to convert to a dense numpy array")
    ):
        make(teacher).fit(sp.csr_matrix(iris[0]))
    assert teacher.n_queries == 0
