"""Interoperability: a model served by MLServer, an independent Open Inference Protocol server.

``RemoteTeacher(url, name, protocol="v2")`` must distill it with no adaptation: the V2
specification is the contract. MLServer pins its own FastAPI and Starlette, so it lives in
its own virtual environment: .ci/run installs it in ``.venv-mlserver`` and sets
``DB3LEARN_MLSERVER`` to its ``mlserver`` executable. Without it, the test is skipped.
"""

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


@pytest.fixture
def mlserver(svc, tmp_path):
    """MLServer serving ``svc`` (its sklearn runtime loads joblib files) on 127.0.0.1."""
    models = tmp_path / "models"
    (models / "digits").mkdir(parents=True)
    joblib.dump(svc, models / "digits" / "model.joblib")  # our own model, in the format MLServer reads
    settings = {
        "name": "digits",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (models / "digits" / "model-settings.json").write_text(json.dumps(settings))
    port = free_port()
    server = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
    }
    (models / "settings.json").write_text(json.dumps(server))
    log = tmp_path / "mlserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([MLSERVER, "start", str(models)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            return "exited"
        try:
            return httpx.get(f"{url}/v2/models/digits/ready", timeout=1).status_code == 200
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


def test_a_model_served_by_mlserver_distills_with_no_adaptation(digits, svc, mlserver):
    X = digits[0][:60]
    teacher = RemoteTeacher(mlserver, "digits", protocol="v2")
    np.testing.assert_array_equal(teacher.predict(digits[2]), svc.predict(digits[2]))
    settings = dict(soft_labeler=DecisionBoundarySoftLabeler(n_directions=2), max_epochs=3, random_state=0)
    remote = DB3Distiller(RemoteTeacher(mlserver, "digits", protocol="v2"), **settings).fit(X)
    local = DB3Distiller(svc, **settings).fit(X)
    assert remote.n_queries_ == local.n_queries_
    np.testing.assert_array_equal(remote.predict(digits[2]), local.predict(digits[2]))
