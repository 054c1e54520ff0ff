"""n_jobs: teacher queries answered by joblib workers (loky, a Dask cluster) give the serial run exactly."""

import os
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from db3learn import (
    ClassCoverageWarning,
    DecisionBoundarySoftLabeler,
    QueryBudgetExceeded,
    RemoteTeacher,
    Teacher,
    TeacherError,
    TorchTeacher,
    ZeroShotTransferSet,
)
from db3learn.serve import create_app

from .servers import thread_server


@pytest.fixture(scope="module")
def logreg(digits):
    X, y, _, _ = digits
    return LogisticRegression(max_iter=300).fit(X, y)


@pytest.fixture(scope="module")
def torch_module():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


@pytest.fixture(scope="module")
def transfer(digits):
    """References, and samples that share queries with them: some are references, some repeat."""
    X, _, X_test, _ = digits
    references = X[:150]
    samples = np.vstack([X_test[:40], references[:15], X_test[:5]])
    return references, samples


class PidModel:
    """A real model that notes, in a file, the process that answered each batch."""

    def __init__(self, model, path):
        self.model, self.path = model, str(path)
        self.classes_ = model.classes_

    def predict(self, X):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return self.model.predict(X)


def worker_pids(path):
    """The processes other than this one that answered batches."""
    return set(path.read_text().split()) - {str(os.getpid())}


class PidNet(torch.nn.Module):
    """A real torch module that notes, in a file, the process that ran each forward pass."""

    def __init__(self, net, path):
        super().__init__()
        self.net, self.path = net, str(path)

    def forward(self, x):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return self.net(x)


class FailingModel:
    """A real model that fails on batches holding one given row."""

    def __init__(self, model, bad_row):
        self.model, self.bad_row = model, bad_row
        self.classes_ = model.classes_

    def predict(self, X):
        if self.bad_row is not None and (X == self.bad_row).all(axis=1).any():
            raise ValueError("the model cannot read this row")
        return self.model.predict(X)


def run_labeler(model, references, samples, *, n_jobs, method="bd", batch_size=256, **params):
    teacher = (
        Teacher(model, batch_size=batch_size)
        if not isinstance(model, torch.nn.Module)
        else TorchTeacher(model, batch_size=batch_size)
    )
    labeler = DecisionBoundarySoftLabeler(teacher, method=method, random_state=0, n_jobs=n_jobs, **params).fit(
        references
    )
    distances, queries = labeler.boundary_distances(samples, return_queries=True)
    return {
        "soft_labels": labeler.transform(samples),
        "distances": distances,
        "queries_per_sample": queries,
        "fit_queries": labeler.n_queries_,
        "n_queries": teacher.n_queries,
        "n_cache_hits": teacher.n_cache_hits,
        "classes": labeler.classes_,
    }


def assert_same_run(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("method", ["bd", "plane", "hsj"])
def test_loky_matches_serial_sklearn_teacher(logreg, transfer, tmp_path, method):
    references, samples = transfer
    params = dict(method=method, max_queries_per_pair=60, max_queries_per_sample=900)
    serial = run_labeler(logreg, references, samples, n_jobs=None, **params)
    pids = tmp_path / "pids"
    parallel = run_labeler(PidModel(logreg, pids), references, samples, n_jobs=2, **params)
    assert_same_run(serial, parallel)
    assert serial["queries_per_sample"].max() <= 900
    assert len(worker_pids(pids)) == 2  # the batches were answered in two worker processes


def test_loky_matches_serial_torch_teacher(torch_module, transfer, tmp_path):
    references, samples = transfer
    serial = run_labeler(torch_module, references, samples, n_jobs=1, method="hsj", max_queries_per_pair=40)
    pids = tmp_path / "pids"
    parallel = run_labeler(
        PidNet(torch_module, pids), references, samples, n_jobs=2, method="hsj", max_queries_per_pair=40
    )
    assert_same_run(serial, parallel)
    assert parallel["n_queries"] > 10_000
    assert len(worker_pids(pids)) == 2


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_cluster_matches_serial(logreg, transfer, dask_client):
    from distributed import get_task_stream

    references, samples = transfer
    serial = run_labeler(logreg, references, samples, n_jobs=None)
    with joblib.parallel_config(backend="dask"), get_task_stream(dask_client) as tasks:
        on_cluster = run_labeler(logreg, references, samples, n_jobs=2)
    assert_same_run(serial, on_cluster)
    workers = {task["worker"] for task in tasks.data}
    assert len(workers) == 2 and len(tasks.data) >= 10  # every search step ran on both workers


def zero_shot(model, *, n_jobs, max_queries=None):
    """A small generator's fit; returns it and its teacher."""
    teacher = Teacher(model, batch_size=256)
    gen = ZeroShotTransferSet(
        teacher,
        n_samples_per_class=8,
        n_iter=3,
        n_directions=5,
        n_features=64,
        feature_range=(0.0, 1.0),
        max_queries=max_queries,
        random_state=0,
        n_jobs=n_jobs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassCoverageWarning)  # coverage is not what these tests are about
        gen.fit()
    return gen, teacher


@pytest.mark.parametrize("max_queries", [None, 3000])
def test_zero_shot_loky_matches_serial(logreg, max_queries, tmp_path):
    serial, t1 = zero_shot(logreg, n_jobs=None, max_queries=max_queries)
    parallel, t2 = zero_shot(PidModel(logreg, tmp_path / "pids"), n_jobs=2, max_queries=max_queries)
    assert len(worker_pids(tmp_path / "pids")) == 2
    np.testing.assert_array_equal(serial.samples_, parallel.samples_)
    np.testing.assert_array_equal(serial.labels_, parallel.labels_)
    assert serial.n_queries_ == parallel.n_queries_ == t1.n_queries == t2.n_queries
    if max_queries is not None:
        assert parallel.n_queries_ <= max_queries
    assert parallel.n_queries_ > 1000


def test_teacher_budget_holds_and_resumes_with_n_jobs(logreg, transfer, tmp_path):
    references, samples = transfer
    full = run_labeler(logreg, references, samples, n_jobs=None, method="plane")
    runs = []
    for n_jobs in (None, 2):
        teacher = Teacher(PidModel(logreg, tmp_path / f"pids{n_jobs}"), batch_size=256, max_queries=4000)
        labeler = DecisionBoundarySoftLabeler(teacher, method="plane", random_state=0, n_jobs=n_jobs).fit(references)
        with pytest.raises(QueryBudgetExceeded) as info:
            labeler.boundary_distances(samples)
        assert teacher.n_queries == 4000  # never past the budget, with any n_jobs
        runs.append((str(info.value), len(teacher._answers)))
        teacher.max_queries = None  # resume: the answers paid for are not asked again
        np.testing.assert_array_equal(labeler.boundary_distances(samples), full["distances"])
        assert teacher.n_queries == full["n_queries"]
    assert runs[0] == runs[1]
    assert len(worker_pids(tmp_path / "pids2")) == 2 and not worker_pids(tmp_path / "pidsNone")


def test_worker_error_is_raised_as_serially_and_keeps_paid_answers(logreg, digits):
    X = digits[0][:600]
    results = []
    for n_jobs in (None, 2):
        model = FailingModel(logreg, bad_row=X[120])  # batch 3 of 12 (50 rows each); chunks: batches 1-6 and 7-12
        teacher = Teacher(model, batch_size=50)
        with pytest.raises(TeacherError) as info:
            DecisionBoundarySoftLabeler(teacher, n_jobs=n_jobs).fit(X)
        assert isinstance(info.value.__cause__, ValueError)
        results.append((str(info.value), teacher.n_queries, len(teacher._answers)))
        model.bad_row = None
        labeler = DecisionBoundarySoftLabeler(teacher, n_jobs=n_jobs).fit(X)
        np.testing.assert_array_equal(labeler.classes_[labeler.reference_labels_], logreg.predict(X))
        assert teacher.n_queries == 600  # only answers count (the failed batch is not one); nothing is asked twice
    (msg_serial, q_serial, cached_serial), (msg_parallel, q_parallel, cached_parallel) = results
    assert msg_serial == msg_parallel
    assert "the answers to the 100 rows asked before it are cached" in msg_parallel
    assert (q_serial, cached_serial) == (100, 100)  # serially, asking stops at the failed batch, which does not count
    assert (q_parallel, cached_parallel) == (400, 400)  # and the second chunk's 300 answers are kept


def test_remote_teacher_in_workers_shares_rate_and_cache(logreg, transfer, tmp_path):
    references, samples = transfer
    app = create_app(logreg, model_name="digits")
    with thread_server(app) as url:
        runs = []
        for n_jobs in (None, 2):
            teacher = RemoteTeacher(
                url, "digits", batch_size=512, max_requests_per_second=1000, cache_dir=tmp_path / f"cache{n_jobs}"
            )
            labeler = DecisionBoundarySoftLabeler(teacher, random_state=0, n_jobs=n_jobs).fit(references)
            runs.append((labeler.transform(samples), teacher.n_queries, teacher.n_requests))
            fork = teacher._fork(4)
            assert fork.model.max_requests_per_second == 250 and fork.model.max_concurrency == 1
            again = RemoteTeacher(url, "digits", batch_size=512, cache_dir=tmp_path / f"cache{n_jobs}")
            labeler = DecisionBoundarySoftLabeler(again, random_state=0).fit(references)
            labeler.boundary_distances(samples)
            assert again.n_queries == 0  # every answer reached the disk cache
        stats = app.state.ledger.as_dict()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == runs[1][2]  # the same requests: the same batches, one metadata request
    assert stats["rows_answered"] == 2 * runs[0][1]


def test_n_jobs_is_a_parameter(logreg, digits):
    for est in (DecisionBoundarySoftLabeler(logreg, n_jobs=3), ZeroShotTransferSet(logreg, n_jobs=3)):
        assert est.get_params()["n_jobs"] == 3
        assert clone(est).get_params()["n_jobs"] == 3
        assert est.set_params(n_jobs=-1).n_jobs == -1
    with pytest.raises(InvalidParameterError, match="n_jobs"):
        DecisionBoundarySoftLabeler(logreg, n_jobs="two").fit(digits[0][:20])
