"""`db3learn serve` and safe model files: skops with trusted types only, students as weights + JSON."""

import json

import httpx
import joblib
import numpy as np
import pytest
import skops.io
import torch
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, RemoteTeacher, UntrustedModelError
from db3learn.cli import main
from db3learn.io import load_model, load_student, save_student
from db3learn.models import MLP
from db3learn.serve import Faults, create_app

from .servers import thread_server


def shady(X):  # a function skops cannot vouch for
    return X


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_skops_refuses_untrusted_types_and_loads_them_only_when_trusted(digits, tmp_path, capsys):
    X, y = digits[0][:200], digits[1][:200]
    path = tmp_path / "mlp.skops"
    mlp = MLPClassifier((8,), max_iter=300, random_state=0).fit(X, y)
    skops.io.dump(mlp, path)
    adam = "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"
    with pytest.raises(
        UntrustedModelError, match=r"mlp.skops holds types that skops does not trust: \['sklearn\.neural_network"
    ) as info:
        load_model(path)
    assert info.value.untrusted_types == [adam] and isinstance(info.value, ValueError)
    assert "nothing was loaded" in str(info.value) and "--trust TYPE" in str(info.value)
    assert main(["serve", str(path), "--port", "9"]) == 1  # refused before any socket is opened
    assert "does not trust" in capsys.readouterr().err
    np.testing.assert_array_equal(load_model(path, trusted=[adam]).predict(digits[2]), mlp.predict(digits[2]))

    custom = tmp_path / "custom.skops"
    skops.io.dump(make_pipeline(FunctionTransformer(shady), mlp), custom)
    with pytest.raises(UntrustedModelError) as info:
        load_model(custom, trusted=[adam])
    assert info.value.untrusted_types == ["tests.test_serve.shady"]


@pytest.mark.parametrize("name", ["model.joblib", "model.pkl", "weights.pt"])
def test_pickles_are_never_loaded(svc, tmp_path, name):
    path = tmp_path / name
    joblib.dump(svc, path)
    with pytest.raises(
        ValueError, match=rf"never unpickles a file such as {name}\. If you trust that file, convert it once"
    ):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="No model at"):
        load_model(tmp_path / "missing.skops")


def test_endpoint_speaks_the_open_inference_protocol(digits, svc):
    X = digits[2][:3]
    app = create_app(svc, model_name="digits")
    with thread_server(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/v2").json()["name"] == "db3learn"
        assert http.get("/v2/models/digits/ready").json() == {"name": "digits", "ready": True}
        meta = http.get("/v2/models/digits").json()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
        assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]
        tensor = {"name": "input-0", "shape": [3, 64], "datatype": "FP64", "data": X.tolist()}  # nested data is allowed
        answer = http.post("/v2/models/digits/infer", json={"id": "42", "inputs": [tensor]}).json()
        assert answer == {
            "model_name": "digits",
            "id": "42",
            "outputs": [{"name": "label", "shape": [3], "datatype": "INT64", "data": svc.predict(X).tolist()}],
        }
        assert http.post("/v1/models/digits:predict", json={"instances": X.tolist()}).json() == {
            "predictions": svc.predict(X).tolist()
        }

        def refused(path, body, status=400):
            response = http.post(path, json=body)
            assert response.status_code == status
            return response.json()["error"]

        assert (
            refused("/v2/models/other/infer", {"inputs": [tensor]}, 404)
            == "Unknown model 'other'; this server serves 'digits'."
        )
        assert "Expected rows of shape [n_rows, 64]; got shape [3, 2]" in refused(
            "/v2/models/digits/infer", {"inputs": [{**tensor, "shape": [3, 2], "data": [0.0] * 6}]}
        )
        assert "must hold 192 FP64 values for shape [3, 64]" in refused(
            "/v2/models/digits/infer", {"inputs": [{**tensor, "data": [1.0]}]}
        )
        assert "Unknown outputs ['proba']" in refused(
            "/v2/models/digits/infer", {"inputs": [tensor], "outputs": [{"name": "proba"}]}
        )
        assert refused("/v2/models/digits/infer", {"nothing": 1}).startswith(
            "Malformed request body: body.inputs: Field required"
        )
        stats = http.get("/db3learn/stats").json()
    assert stats["rows_answered"] == 6 and stats["rows_received"] == 6


def test_fault_settings_are_validated():
    with pytest.raises(ValueError, match="fail_rate must be in"):
        Faults(fail_rate=1.5)
    with pytest.raises(ValueError, match=r"Fault kinds must be among \['500', '503', '429', 'slow'\]; got \['404'\]"):
        Faults(fail_rate=0.1, kinds=("404",))


def _small_distiller(X, svc, **kwargs):
    return DB3Distiller(
        svc, soft_labeler=DecisionBoundarySoftLabeler(method="sd"), max_epochs=5, random_state=0, **kwargs
    ).fit(X)


def test_student_is_saved_loaded_and_served(digits, svc, tmp_path):
    X, X_test = digits[0][:200], digits[2]
    distiller = _small_distiller(X, svc, student__hidden_units=(24, 12))
    out = save_student(distiller, tmp_path / "student")
    config = json.loads((out / "student.json").read_text())
    assert config["module"] == "MLP" and config["module_params"]["hidden_units"] == [24, 12]
    assert config["classes"] == list(range(10)) and config["n_features_in"] == 64
    student = load_student(out)
    np.testing.assert_array_equal(student.predict(X_test), distiller.predict(X_test))
    np.testing.assert_allclose(student.predict_proba(X_test), distiller.predict_proba(X_test), rtol=1e-5, atol=1e-6)
    assert student.score(X_test, svc.predict(X_test)) == distiller.score(X_test)  # fidelity
    with thread_server(create_app(load_model(out), model_name="student")) as url:  # a student can teach in turn
        np.testing.assert_array_equal(
            RemoteTeacher(url, "student").predict(X_test[:100]), distiller.predict(X_test[:100])
        )
    torch.save({"net.0.weight": torch.zeros(3, 3)}, out / "weights.pt")
    with pytest.raises(ValueError, match="does not fit the architecture"):
        load_student(out)


def test_only_db3learn_modules_are_saved(digits, svc, tmp_path):
    class Custom(MLP):
        pass

    distiller = _small_distiller(digits[0][:100], svc, student=Custom)
    with pytest.raises(ValueError, match="save_student saves students whose module is a db3learn.models class"):
        save_student(distiller, tmp_path)
