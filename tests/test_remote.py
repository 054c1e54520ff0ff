"""RemoteTeacher against real servers on 127.0.0.1: `db3learn serve`'s app, and misbehaving ones."""

import json
import logging
import pickle
import threading
import time

import httpx
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from db3learn import (
    DB3Distiller,
    DB3Error,
    DecisionBoundarySoftLabeler,
    QueryBudgetExceeded,
    RemoteTeacher,
    RemoteTeacherError,
    TeacherAnswerError,
    TeacherError,
)
from db3learn._remote import _Endpoint, parse_retry_after
from db3learn.serve import Faults, create_app

from .servers import free_port, thread_server, v2_output

FAST = dict(backoff=0.01, max_backoff=2.0)  # retries in milliseconds, so that fault tests stay quick


def served(model, name="digits", **kwargs):
    app = create_app(model, model_name=name, **kwargs)
    return app, thread_server(app)


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_round_trip_against_db3learn_serve(digits, svc, protocol):
    X = digits[2][:250]
    app, server = served(svc)
    with server as url:
        teacher = RemoteTeacher(url, "digits", protocol=protocol, batch_size=100)
        assert teacher.ready()
        labels = teacher.predict(X)
        np.testing.assert_array_equal(labels, svc.predict(X))
        assert labels.dtype == np.int64
        assert teacher.n_queries == 250 and teacher.n_retries == 0
        infer_requests = 3  # 100 + 100 + 50 rows; V2 also reads the model's metadata once
        assert teacher.n_requests == 1 + infer_requests + (protocol == "v2")
        np.testing.assert_array_equal(teacher.predict(X[::-1]), svc.predict(X[::-1]))  # from the cache
        assert teacher.n_cache_hits == 250
        stats = app.state.ledger.as_dict()
        assert stats["rows_answered"] == stats["distinct_rows_answered"] == 250
        assert not RemoteTeacher(url, "no-such-model", protocol=protocol).ready()


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_string_labels_travel_as_strings(digits, protocol):
    X, y = digits[0][:300], digits[1][:300]
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    model = LogisticRegression(max_iter=500).fit(X, names[y])
    app, server = served(model)
    with server as url:
        labels = RemoteTeacher(url, "digits", protocol=protocol).predict(digits[2][:50])
    np.testing.assert_array_equal(labels, model.predict(digits[2][:50]))
    assert labels.dtype.kind == "U"


def test_distilling_through_http_equals_distilling_the_model_itself(digits, svc):
    X = digits[0][:60]
    settings = dict(soft_labeler=DecisionBoundarySoftLabeler(n_directions=2), max_epochs=3, random_state=0)
    local = DB3Distiller(svc, **settings).fit(X)
    _, server = served(svc)
    with server as url:
        remote = DB3Distiller(RemoteTeacher(url, "digits", batch_size=256), **settings).fit(X)
        fidelity = remote.score(digits[2][:200])
    assert remote.n_queries_ == local.n_queries_ > 60
    np.testing.assert_array_equal(remote.predict(digits[2]), local.predict(digits[2]))
    assert fidelity == local.score(digits[2][:200])


def test_injected_5xx_429_and_timeouts_are_survived_with_identical_results(digits, svc):
    X = digits[0][:60]
    settings = dict(soft_labeler=DecisionBoundarySoftLabeler(n_directions=2), max_epochs=3, random_state=0)
    clean_app, clean_server = served(svc)
    with clean_server as url:
        clean_teacher = RemoteTeacher(url, "digits", batch_size=128)
        clean = DB3Distiller(clean_teacher, **settings).fit(X)
    assert clean_teacher.n_requests >= 10  # seed 2 draws every fault kind within the first 9 inference requests
    faults = Faults(fail_rate=0.35, kinds=("500", "503", "429", "slow"), slow_seconds=1.5, retry_after=0, seed=2)
    app, server = served(svc, faults=faults)
    with server as url:
        teacher = RemoteTeacher(url, "digits", batch_size=128, max_concurrency=3, timeout=0.5, max_retries=12, **FAST)
        faulty = DB3Distiller(teacher, **settings).fit(X)
    injected = app.state.ledger.faults
    assert set(injected) == {"500", "503", "429", "slow"}  # every kind happened ...
    assert teacher.n_retries >= sum(injected.values())  # ... and was retried
    assert teacher.n_queries == clean_teacher.n_queries == faulty.n_queries_  # a retried row is one query
    np.testing.assert_array_equal(faulty.soft_labeler_.transform(X), clean.soft_labeler_.transform(X))
    np.testing.assert_array_equal(faulty.predict(digits[2]), clean.predict(digits[2]))


def test_retry_after_is_honoured_then_the_error_is_clear(digits, svc):
    app, server = served(svc, faults=Faults(fail_rate=1.0, kinds=("429",), retry_after=1))
    with server as url:
        teacher = RemoteTeacher(url, "digits", max_retries=2, backoff=0.01, max_backoff=5.0)
        start = time.monotonic()
        with pytest.raises(RemoteTeacherError) as info:
            teacher.predict(digits[0][:10])
        elapsed = time.monotonic() - start
    assert elapsed >= 2.0  # two waits of Retry-After: 1 s, not the 10 ms backoff
    msg = str(info.value)
    assert "failed 3 times" in msg and "HTTP 429" in msg and "Too many requests" in msg
    assert "Every answer received so far is cached" in msg
    assert isinstance(info.value, TeacherError) and teacher.n_retries == 2


def test_a_retry_after_longer_than_max_backoff_is_not_slept_silently(digits, svc):
    app, server = served(svc, faults=Faults(fail_rate=1.0, kinds=("429",), retry_after=120))
    with server as url, pytest.raises(RemoteTeacherError, match=r"asks to wait 120 s .*more than max_backoff=30 s"):
        RemoteTeacher(url, "digits", max_retries=3).predict(digits[0][:10])
    assert app.state.ledger.requests <= 3  # metadata, then one infer: no retry


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_concurrent_requests_keep_the_budget_exact_and_cache_what_was_paid(digits, svc):
    X = digits[0][:100]
    app, server = served(svc)
    with server as url:
        teacher = RemoteTeacher(url, "digits", batch_size=10, max_concurrency=4, max_queries=35)
        with pytest.raises(QueryBudgetExceeded, match="max_queries=35 rows, 35 already spent, and 65 rows"):
            teacher.predict(X)
        assert app.state.ledger.rows_answered == 35 == teacher.n_queries
        teacher.max_queries = 100
        np.testing.assert_array_equal(teacher.predict(X), svc.predict(X))
        stats = app.state.ledger.as_dict()
    assert stats["rows_answered"] == 100 and stats["repeated_rows_answered"] == 0


def test_persistent_cache_is_shared_across_teachers_clones_and_pickles(digits, svc, tmp_path):
    X = digits[0][:80]
    app, server = served(svc)
    with server as url:
        first = RemoteTeacher(url, "digits", cache_dir=tmp_path)
        first.predict(X[:50])
        assert clone(first) is first
        revived = pickle.loads(pickle.dumps(first))  # e.g. in another process
        np.testing.assert_array_equal(revived.predict(X), svc.predict(X))
        assert revived.n_cache_hits == 50 and revived.n_queries - first.n_queries == 30
        other = RemoteTeacher(url, "digits", cache_dir=tmp_path, cache_key="another model")
        other.predict(X[:5])  # another identity asks again
        assert other.n_queries == 5
        revived.close()
    assert app.state.ledger.rows_answered == 85


def test_rate_limit_spaces_requests(digits, svc):
    app, server = served(svc)
    with server as url:
        teacher = RemoteTeacher(
            url, "digits", input_name="input-0", batch_size=5, max_concurrency=4, max_requests_per_second=20
        )
        start = time.monotonic()
        teacher.predict(digits[0][:50])  # 10 requests
        elapsed = time.monotonic() - start
    assert teacher.n_requests == 10
    assert elapsed >= 9 * 0.05 * 0.9


# -- malformed answers, from a real server that misbehaves ---------------------------------------------


MALFORMED = [
    ("v2", v2_output([1, 2], [2]), TeacherAnswerError, r"one label for each of the 3 rows sent; output 'label' has 2"),
    (
        "v2",
        v2_output([0.1] * 9, [3, 3], "FP32", "predict_proba"),
        TeacherAnswerError,
        r"holds 3 values per row .*scores or probabilities",
    ),
    (
        "v2",
        v2_output([0.2, 0.7, 0.1], [3], "FP64"),
        TeacherAnswerError,
        r"non-integer values such as \[0.2, 0.7, 0.1\]",
    ),
    ("v2", v2_output([1, 2, 3], [3], "INT4"), TeacherAnswerError, r"datatype 'INT4'; expected one of"),
    ("v2", v2_output([1, 2], [3], "INT64"), TeacherAnswerError, r"must hold 3 INT64 values for shape \[3\]"),
    (
        "v2",
        json.dumps({"predictions": [1, 2, 3]}),
        TeacherAnswerError,
        r'Open Inference Protocol inference response.*"outputs"',
    ),
    ("v2", "<html>Bad gateway of sorts</html>", TeacherAnswerError, r"Expected a JSON response .*'<html>Bad gateway"),
    ("v1", json.dumps({"predictions": [[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]]}), TeacherAnswerError, r"2 values per row"),
    (
        "v1",
        json.dumps({"predictions": [{"label": 1}] * 3}),
        TeacherAnswerError,
        r"objects with keys \['label'\]; pass output_name=",
    ),
    ("v1", json.dumps({"outputs": [1, 2, 3]}), TeacherAnswerError, r'V1 predict response.*"predictions"'),
    (
        "v1",
        json.dumps({"predictions": [1, [2], {"a": 3}]}),
        TeacherAnswerError,
        r"one label \(a number or a string\) per row",
    ),
]


@pytest.mark.parametrize("protocol, body, error, match", MALFORMED)
def test_malformed_responses_are_clear_errors_that_quote_them(misbehaving, protocol, body, error, match):
    misbehaving.reply = (200, body, {})
    teacher = RemoteTeacher(misbehaving.url, "m", protocol=protocol, input_name="x", max_retries=0)
    with pytest.raises(error, match=match) as info:
        teacher.predict(np.arange(12.0).reshape(3, 4))  # 3 distinct rows
    assert "server answered" in str(info.value).lower()  # quoted
    assert isinstance(info.value, DB3Error)
    assert teacher.n_cache_hits == 0 and not teacher._answers  # nothing malformed is cached


def test_long_responses_are_quoted_truncated(misbehaving):
    misbehaving.reply = (200, json.dumps({"outputs": "x" * 5000}), {})
    with pytest.raises(TeacherAnswerError) as info:
        RemoteTeacher(misbehaving.url, "m", input_name="x").predict(np.zeros((2, 4)))
    assert "characters in all)" in str(info.value) and len(str(info.value)) < 1000


@pytest.mark.parametrize(
    "status, match",
    [
        (400, r"HTTP 400: '\{\"error\": \"bad input shape\"\}'. The server rejected the request: check input_name"),
        (404, r"HTTP 404.*Check base_url, model_name='m'"),
        (401, r"HTTP 401.*pass api_key_env="),
    ],
)
def test_http_errors_other_than_429_are_not_retried(misbehaving, status, match):
    misbehaving.reply = (status, json.dumps({"error": "bad input shape"}), {})
    teacher = RemoteTeacher(misbehaving.url, "m", input_name="x", max_retries=5)
    with pytest.raises(RemoteTeacherError, match=match):
        teacher.predict(np.zeros((2, 4)))
    assert len(misbehaving.seen) == 1 and teacher.n_retries == 0


def test_v2_request_follows_the_spec_and_reads_a_named_output(misbehaving):
    def reply(body):
        (tensor,) = body["inputs"]
        n = tensor["shape"][0]
        outputs = [
            {"name": "proba", "shape": [n, 2], "datatype": "FP32", "data": [0.5] * (2 * n)},
            {"name": "predict", "shape": [n, 1], "datatype": "INT64", "data": [[7]] * n},
        ]
        return 200, json.dumps({"model_name": "m", "outputs": outputs}), {}

    misbehaving.reply = reply
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    labels = RemoteTeacher(misbehaving.url, "m", model_version="3", input_name="pixels", output_name="predict").predict(
        X
    )
    np.testing.assert_array_equal(labels, [7, 7, 7])
    method, path, headers, body = misbehaving.seen[-1]
    assert (method, path) == ("POST", "v2/models/m/versions/3/infer")
    assert json.loads(body) == {
        "inputs": [{"name": "pixels", "shape": [3, 2], "datatype": "FP32", "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}],
        "outputs": [{"name": "predict"}],
    }
    assert headers["content-type"] == "application/json"


def test_v1_request_follows_the_spec(misbehaving):
    misbehaving.reply = (200, json.dumps({"predictions": [3, 4]}), {})
    labels = RemoteTeacher(misbehaving.url, "m", protocol="v1").predict(np.array([[1.5, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(labels, [3, 4])
    method, path, _, body = misbehaving.seen[-1]
    assert (method, path) == ("POST", "v1/models/m:predict")
    assert json.loads(body) == {"instances": [[1.5, 2.0], [3.0, 4.0]]}


# -- credentials ----------------------------------------------------------------------------------------

SECRET = "s3cret-api-key-0123456789"


def test_api_key_is_sent_but_never_logged_shown_or_pickled(misbehaving, monkeypatch, caplog):
    monkeypatch.setenv("DB3LEARN_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's included

    def reply(body):
        if misbehaving.seen[-1][2].get("authorization") != f"Bearer {SECRET}":
            return 401, json.dumps({"error": "unauthorized"}), {}
        if len(misbehaving.seen) % 2:  # every other request fails once, so that retries are logged too
            return 503, json.dumps({"error": "busy"}), {}
        return 200, v2_output([1] * len(body["inputs"][0]["data"]), [len(body["inputs"][0]["data"])]), {}

    misbehaving.reply = reply
    teacher = RemoteTeacher(
        misbehaving.url, "m", input_name="x", api_key_env="DB3LEARN_TEST_KEY", batch_size=2, max_concurrency=2, **FAST
    )
    np.testing.assert_array_equal(teacher.predict(np.arange(6.0).reshape(6, 1)), [1] * 6)
    assert teacher.n_retries > 0
    monkeypatch.setenv("DB3LEARN_TEST_KEY", "wrong-" + SECRET)
    refused = RemoteTeacher(misbehaving.url, "m", input_name="x", api_key_env="DB3LEARN_TEST_KEY")
    with pytest.raises(RemoteTeacherError, match="HTTP 401") as info:
        refused.predict(np.zeros((1, 1)))
    leaks = [
        repr(teacher),
        str(teacher.__dict__),
        str(info.value),
        repr(info.value),
        str(info.value.__cause__),
        caplog.text,
        pickle.dumps(teacher).decode("latin-1"),
    ]
    assert "DB3LEARN_TEST_KEY" in repr(vars(teacher.model))  # the variable's name may show ...
    for text in leaks:
        assert SECRET not in text  # ... its value never does
    assert "HTTP Request: POST" in caplog.text  # httpx did log, at DEBUG/INFO level


def test_api_key_errors_name_the_variable_and_refuse_plain_http(monkeypatch):
    monkeypatch.delenv("DB3LEARN_MISSING_KEY", raising=False)
    endpoint = RemoteTeacher("http://127.0.0.1:9", "m", api_key_env="DB3LEARN_MISSING_KEY").model
    with pytest.raises(RemoteTeacherError, match=r"DB3LEARN_MISSING_KEY \(api_key_env\) is not set"):
        endpoint._headers()
    monkeypatch.setenv("DB3LEARN_MISSING_KEY", SECRET)
    remote = _Endpoint.__new__(_Endpoint)
    remote.__dict__.update(vars(endpoint), base_url="http://models.example.com")
    with pytest.raises(RemoteTeacherError, match="Refusing to send the API key .* over plain HTTP") as info:
        remote._headers()  # checked before any connection is opened
    assert SECRET not in str(info.value)
    assert endpoint._headers()["Authorization"] == f"Bearer {SECRET}"  # loopback: fine


def test_bad_parameters_are_refused_up_front():
    with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL"):
        RemoteTeacher("127.0.0.1:8080", "m")
    with pytest.raises(ValueError, match="protocol must be 'v2'"):
        RemoteTeacher("http://127.0.0.1:8080", "m", protocol="grpc")
    with pytest.raises(ValueError, match="TLS verification cannot be turned off"):
        RemoteTeacher("https://127.0.0.1:8080", "m", verify=False)
    with pytest.raises(ValueError, match="max_concurrency must be an integer >= 1"):
        RemoteTeacher("http://127.0.0.1:8080", "m", max_concurrency=0)


def test_unreachable_server_gives_up_after_bounded_retries():
    teacher = RemoteTeacher(f"http://127.0.0.1:{free_port()}", "m", input_name="x", max_retries=2, **FAST)
    with pytest.raises(RemoteTeacherError, match=r"failed 3 times over .* ConnectError.*Is the server up") as info:
        teacher.predict(np.zeros((2, 3)))
    assert isinstance(info.value.__cause__.__cause__, httpx.ConnectError)
    assert teacher.n_requests == 3 and teacher.n_retries == 2


def test_server_killed_and_restarted_mid_run_changes_nothing(digits, svc, svc_file, tmp_path):
    from .servers import ServeProcess, read_ledger, wait_until

    X = digits[0][:400]
    port, ledger = free_port(), tmp_path / "ledger.txt"
    teacher = RemoteTeacher(
        f"http://127.0.0.1:{port}", "digits-svc", batch_size=50, max_concurrency=2, max_retries=10, backoff=0.2
    )
    result = {}
    with ServeProcess(svc_file, port, "--stall-after", 150, "--ledger", ledger) as first:
        worker = threading.Thread(target=lambda: result.update(labels=teacher.predict(X)), daemon=True)
        worker.start()
        wait_until(lambda: first.stats()["stalled"] == 2, 30, "both requests in flight to stall")
        first.kill()  # mid-run, with two requests in flight
        with ServeProcess(svc_file, port, "--ledger", ledger):
            worker.join(timeout=120)
    assert not worker.is_alive()
    np.testing.assert_array_equal(result["labels"], svc.predict(X))
    assert teacher.n_retries >= 2 and teacher.n_queries == 400
    rows = read_ledger(ledger)
    assert len(rows) == len(set(rows)) == 400  # every row answered exactly once over both servers


def test_the_disk_cache_never_unpickles_what_it_finds(digits, svc, tmp_path):
    from diskcache import Cache

    X = digits[0][:3]
    app, server = served(svc)
    with server as url:
        teacher = RemoteTeacher(url, "digits", cache_dir=tmp_path)
        teacher.predict(X[:1])
        key = teacher._store.prefix + next(iter(teacher._answers)).hex()
        teacher.close()
        with Cache(tmp_path) as planted:  # someone else writes a pickle where a label was
            planted.set(key, {"not": "a label"})
        with pytest.raises(
            TeacherAnswerError, match="holds a pickled value, which db3learn never writes and will not load"
        ):
            RemoteTeacher(url, "digits", cache_dir=tmp_path).predict(X)
