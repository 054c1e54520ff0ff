import re

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from db3learn import (
    DB3Error,
    QueryBudgetExceeded,
    Teacher,
    TeacherAnswerError,
    TeacherError,
    TorchTeacher,
    as_teacher,
)

from .conftest import CountingModel


def test_counts_rows_sent_and_cache_hits(digits, svc):
    X = digits[0]
    model = CountingModel(svc)
    teacher = Teacher(model, batch_size=128)
    labels = teacher.predict(X[:300])
    np.testing.assert_array_equal(labels, svc.predict(X[:300]))
    assert teacher.n_queries == model.rows == 300
    assert model.calls == 3  # 128 + 128 + 44
    again = teacher.predict(X[200:400])  # 100 cached, 100 new
    np.testing.assert_array_equal(again, svc.predict(X[200:400]))
    assert teacher.n_queries == model.rows == 400
    assert teacher.n_cache_hits == 100


def test_duplicate_rows_in_one_call_are_asked_once(digits, svc):
    X = digits[0]
    model = CountingModel(svc)
    teacher = Teacher(model)
    labels = teacher.predict(np.vstack([X[:5], X[:5], X[:5]]))
    assert model.rows == 5
    np.testing.assert_array_equal(labels, np.tile(svc.predict(X[:5]), 3))


def test_cache_off_asks_every_row(digits, svc):
    model = CountingModel(svc)
    teacher = Teacher(model, cache=False)
    teacher.predict(digits[0][:10])
    teacher.predict(digits[0][:10])
    assert model.rows == teacher.n_queries == 20


def test_budget_spends_what_is_left_then_raises_and_resumes(digits, svc):
    X = digits[0]
    model = CountingModel(svc)
    teacher = Teacher(model, batch_size=64, max_queries=100)
    teacher.predict(X[:60])
    with pytest.raises(QueryBudgetExceeded) as info:
        teacher.predict(X[:200])
    err = info.value
    assert isinstance(err, DB3Error) and isinstance(err, RuntimeError)
    assert err.max_queries == 100 and err.n_queries == 100 and err.n_requested == 100
    msg = str(err)
    assert "max_queries=100 rows, 100 already spent" in msg
    assert "100 rows of this call's 140 uncached rows are still unanswered" in msg
    assert "teacher.max_queries" in msg
    assert model.rows == 100  # the 40 rows that fitted the budget were asked ...
    teacher.max_queries = 1000
    labels = teacher.predict(X[:200])  # ... and are not asked again
    assert model.rows == 200
    np.testing.assert_array_equal(labels, svc.predict(X[:200]))


def test_teacher_that_raises_keeps_earlier_answers(digits, svc):
    X = digits[0]

    class FailsOnSecondBatch:
        def __init__(self):
            self.calls = 0

        def predict(self, X):
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("server went away")
            return svc.predict(X)

    model = FailsOnSecondBatch()
    teacher = Teacher(model, batch_size=50)
    with pytest.raises(
        TeacherError, match=r"ConnectionError: server went away.*answers to the 50 rows asked before it are cached"
    ) as info:
        teacher.predict(X[:120])
    assert isinstance(info.value.__cause__, ConnectionError)
    labels = teacher.predict(X[:120])
    np.testing.assert_array_equal(labels, svc.predict(X[:120]))
    assert teacher.n_cache_hits == 50


@pytest.mark.parametrize(
    "answer, pattern",
    [
        (lambda X: np.zeros(len(X) - 1), r"shape \(10,\); it returned an array of shape \(9,\)"),
        (lambda X: np.zeros((len(X), 3)), r"shape \(10,\); it returned an array of shape \(10, 3\)"),
        (lambda X: np.full(len(X), np.nan), r"non-finite labels"),
    ],
)
def test_bad_answers_are_rejected(answer, pattern):
    teacher = Teacher(answer)
    with pytest.raises(TeacherAnswerError, match=pattern):
        teacher.predict(np.random.default_rng(0).random((10, 4)))
    assert not teacher._answers  # nothing attributable was cached


def test_unknown_labels_are_rejected_but_cached():
    rng = np.random.default_rng(0)
    X = rng.random((10, 3))
    calls = []

    def model(X):
        calls.append(len(X))
        return np.where(X[:, 0] > 0.5, 7, 1)

    teacher = Teacher(model, classes=[0, 1])
    with pytest.raises(TeacherAnswerError, match=re.escape("labels [7] outside its classes [0, 1]")):
        teacher.predict(X)
    with pytest.raises(TeacherAnswerError):
        teacher.predict(X)
    assert calls == [10]


def test_clone_shares_the_fitted_teacher_counter_and_cache(digits):
    X, y = digits[0], digits[1]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    teacher = Teacher(pipe)
    teacher.predict(X[:10])
    twin = clone(teacher)
    assert twin is teacher and twin.model is pipe
    twin.predict(X[:10])
    assert teacher.n_queries == 10 and teacher.n_cache_hits == 10
    np.testing.assert_array_equal(teacher.classes_, np.arange(10))


def test_torch_teacher_batches_and_infers_classes():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 4))
    teacher = TorchTeacher(module, batch_size=7)
    X = np.random.default_rng(0).random((20, 6)).astype(np.float32)
    labels = teacher.predict(X)
    with torch.no_grad():
        expected = module(torch.from_numpy(X)).argmax(1).numpy()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(teacher.classes_, np.arange(4))
    assert teacher.n_queries == 20


def test_torch_teacher_reshapes_rows():
    from db3learn.models import LeNet5

    torch.manual_seed(0)
    module = LeNet5(n_features=784)
    teacher = TorchTeacher(module, input_shape=(1, 28, 28))
    X = np.random.default_rng(0).random((3, 784)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(X).reshape(3, 1, 28, 28)).argmax(1).numpy()
    np.testing.assert_array_equal(teacher.predict(X), expected)


def test_as_teacher_picks_the_wrapper(svc):
    assert type(as_teacher(svc)) is Teacher
    assert type(as_teacher(torch.nn.Linear(2, 2))) is TorchTeacher
    t = Teacher(svc)
    assert as_teacher(t) is t
    with pytest.raises(TypeError, match="must have a predict"):
        as_teacher(42)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        Teacher(svc, batch_size=0)


def test_string_labels():
    teacher = Teacher(lambda X: np.where(X[:, 0] > 0, "cat", "dog"))
    out = teacher.predict(np.array([[1.0], [-1.0]]))
    assert out.tolist() == ["cat", "dog"]


def test_skorch_net_teacher_answers_with_indices(digits):
    from skorch import NeuralNetClassifier

    from db3learn.models import MLP

    X, y = digits[0].astype(np.float32), digits[1]
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MLP, module__n_features=64, module__n_classes=10, max_epochs=3, lr=0.01, train_split=None
    ).fit(X, y)
    teacher = as_teacher(net)
    np.testing.assert_array_equal(teacher.predict(X[:50]), net.predict(X[:50]))
    np.testing.assert_array_equal(teacher.classes_, np.arange(10))


def test_set_output_survives_clone(digits, svc):
    from db3learn import DecisionBoundarySoftLabeler

    labeler = DecisionBoundarySoftLabeler(svc, method="sd").set_output(transform="pandas")
    out = clone(labeler).fit(digits[0][:30]).transform(digits[0][:3])
    assert list(out.columns)[:2] == ["decisionboundarysoftlabeler0", "decisionboundarysoftlabeler1"]


def test_max_queries_must_be_a_count(svc):
    with pytest.raises(ValueError, match="max_queries must be a non-negative integer or None, got -1"):
        Teacher(svc, max_queries=-1)
