"""`db3learn serve` hardened: body and row limits, API key, Host allow-list, model errors kept server-side.

Every test talks to a real uvicorn server on a loopback address, with real scikit-learn models.
"""

import json
import logging
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from db3learn import RemoteTeacher, RemoteTeacherError
from db3learn.serve import create_app, serve

from .servers import free_port, thread_server, wait_until

KEY = "k3y-7f1c2d9e-not-in-any-message"
KEY_ENV = "DB3LEARN_TEST_SERVE_KEY"


def raw_exchange(url, request, timeout=20):
    """Send the raw bytes ``request`` and read until the server closes: (status, headers, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1").lower(), body


def test_body_past_the_limit_is_refused_before_it_is_read(svc):
    app = create_app(svc, model_name="digits")
    with thread_server(app) as url:
        # 50 MB announced, 13 bytes sent: the answer comes without waiting for the rest
        status, head, body = raw_exchange(
            url,
            b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b'{"instances":',
        )
        assert status == 413 and "connection: close" in head
        assert httpx.Response(413, content=body).json() == {
            "error": "The request body of 50,000,000 bytes is larger than this server's limit of 33,554,432 bytes "
            "(max_body_bytes=, `db3learn serve --max-body-bytes`): send fewer rows per request (RemoteTeacher(batch_size=...))."
        }
    stats = app.state.ledger.as_dict()
    assert stats["refused"] == {"body_size": 1} and stats["requests"] == stats["rows_received"] == 0


def test_chunked_body_is_counted_as_it_arrives(digits, svc):
    X = digits[2][:2]
    payload = json.dumps({"instances": X.tolist()}).encode()
    assert 500 < len(payload) < 1_000
    app = create_app(svc, model_name="digits", max_body_bytes=1_000)
    with thread_server(app) as url, httpx.Client(base_url=url, timeout=20) as http:

        def chunks(data, repeat=1):  # no Content-Length: httpx sends Transfer-Encoding: chunked
            for _ in range(repeat):
                for i in range(0, len(data), 200):
                    yield data[i : i + 200]

        json_type = {"Content-Type": "application/json"}
        small = http.post("/v1/models/digits:predict", content=chunks(payload), headers=json_type)
        assert (
            small.request.headers.get("transfer-encoding") == "chunked"
            and "content-length" not in small.request.headers
        )
        assert small.json() == {"predictions": svc.predict(X).tolist()}
        big = http.post("/v1/models/digits:predict", content=chunks(payload, repeat=3), headers=json_type)
        assert big.status_code == 413
        assert big.json()["error"].startswith("The request body is larger than this server's limit of 1,000 bytes")
    stats = app.state.ledger.as_dict()
    assert stats["refused"] == {"body_size": 1} and stats["rows_received"] == 2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_default_body_limit_admits_a_4096_row_mnist_batch():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4096, 784))
    pixels[rng.random(pixels.shape) < 0.8] = 0  # MNIST is mostly background
    X = pixels / 255.0
    model = LogisticRegression(max_iter=20).fit(X[:300], rng.integers(0, 10, 300))
    app = create_app(model, model_name="mnist")
    with thread_server(app) as url:
        teacher = RemoteTeacher(url, "mnist", batch_size=4096)
        np.testing.assert_array_equal(teacher.predict(X), model.predict(X))
    stats = app.state.ledger.as_dict()
    assert stats["rows_answered"] == 4096 and stats["refused"] == {}
    assert teacher.n_requests == 2  # the model's metadata, then all 4096 rows in one request


def test_rows_past_max_rows_are_refused(digits, svc):
    X = digits[2][:6]
    assert create_app(svc, model_name="digits").state.limits == {
        "max_body_bytes": 32 * 2**20,
        "max_rows": 65_536,
    }  # as documented
    app = create_app(svc, model_name="digits", max_rows=5)
    with thread_server(app) as url, httpx.Client(base_url=url) as http:
        tensor = {"name": "input-0", "shape": [6, 64], "datatype": "FP64", "data": X.ravel().tolist()}
        message = (
            "6 rows in one request are more than this server's limit of 5 (max_rows=, `db3learn serve --max-rows`): "
            "send fewer rows per request (RemoteTeacher(batch_size=...))."
        )
        v2 = http.post("/v2/models/digits/infer", json={"inputs": [tensor]})
        v1 = http.post("/v1/models/digits:predict", json={"instances": X.tolist()})
        assert (v2.status_code, v2.json()) == (v1.status_code, v1.json()) == (413, {"error": message})
        with pytest.raises(RemoteTeacherError, match=r"answered HTTP 413: .*limit of 5 \(max_rows="):
            RemoteTeacher(url, "digits", batch_size=6).predict(X)
        np.testing.assert_array_equal(RemoteTeacher(url, "digits", batch_size=5).predict(X), svc.predict(X))
    stats = app.state.ledger.as_dict()
    assert stats["refused"] == {"rows": 3} and stats["rows_received"] == stats["rows_answered"] == 6


@pytest.mark.parametrize(
    "bad",
    [{"max_rows": 0}, {"max_body_bytes": -1}, {"max_rows": 2.5}, {"api_key": ""}, {"allowed_hosts": "example.org"}],
)
def test_settings_are_validated(svc, bad):
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
        create_app(svc, model_name="digits", **bad)


def test_api_key_is_required_and_checked(digits, svc, monkeypatch):
    X = digits[2][:20]
    app = create_app(svc, model_name="digits", api_key=KEY)
    assert KEY not in repr(app.user_middleware)
    with thread_server(app) as url, httpx.Client(base_url=url) as http:
        tensor = {"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": X[0].tolist()}
        for path in ("/v2", "/v2/models/digits", "/v2/models/digits/ready", "/v1/models/digits", "/db3learn/stats"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == 'Bearer realm="db3learn"'
        missing = http.post("/v2/models/digits/infer", json={"inputs": [tensor]})
        assert (missing.status_code, missing.json()) == (
            401,
            {
                "error": "This server requires an API key: send it in the header `Authorization: Bearer KEY` (RemoteTeacher(api_key_env=NAME) does)."
            },
        )
        for wrong in ("Bearer " + KEY[:-1], "Bearer " + KEY + "x", "Basic " + KEY, KEY):
            response = http.post("/v2/models/digits/infer", json={"inputs": [tensor]}, headers={"Authorization": wrong})
            assert response.status_code == 401 and KEY not in response.text, wrong
        assert response.headers["www-authenticate"] == 'Bearer realm="db3learn"'  # no scheme: as if missing
        assert (
            http.get("/v2", headers={"Authorization": "Bearer nope"})
            .headers["www-authenticate"]
            .endswith('error="invalid_token"')
        )
        assert http.get("/v2/health/live").json() == {"live": True}  # probes need no key
        assert http.get("/v2/health/ready").json() == {"ready": True}
        right = http.post(
            "/v2/models/digits/infer", json={"inputs": [tensor]}, headers={"Authorization": "bearer " + KEY}
        )
        assert right.status_code == 200 and right.json()["outputs"][0]["data"] == svc.predict(X[:1]).tolist()

        monkeypatch.setenv(KEY_ENV, KEY)
        teacher = RemoteTeacher(url, "digits", api_key_env=KEY_ENV)
        assert teacher.ready()
        np.testing.assert_array_equal(teacher.predict(X), svc.predict(X))

        monkeypatch.setenv(KEY_ENV, "wrong-" + KEY)
        with pytest.raises(
            RemoteTeacherError, match=rf"answered HTTP 401: .*refused.*Check the API key in {KEY_ENV}"
        ) as info:
            RemoteTeacher(url, "digits", api_key_env=KEY_ENV).predict(X)
        assert KEY not in str(info.value) and KEY not in repr(info.value)
    stats = app.state.ledger.as_dict()
    assert stats["rows_answered"] == 21 and stats["refused"] == {"api_key": 13}


@pytest.mark.parametrize(
    ("allowed_hosts", "host", "status"),
    [
        (None, "127.0.0.1:8080", 200),
        (None, "localhost", 200),
        (None, "LOCALHOST:1", 200),
        (None, "[::1]:8080", 200),
        (None, "evil.example", 400),  # DNS rebinding: a web page's own name, resolved to 127.0.0.1
        (None, "localhost.evil.example:8080", 400),
        (None, "127.0.0.1.nip.io", 400),
        (None, "localhost@evil.example", 400),
        (["teacher.internal"], "teacher.internal:8443", 200),
        (["teacher.internal"], "evil.example", 400),
        (["teacher.internal"], "localhost", 200),
        (["*"], "anything.example", 200),
    ],
)
def test_host_header_must_name_this_server(svc, allowed_hosts, host, status):
    app = create_app(svc, model_name="digits", allowed_hosts=allowed_hosts)
    with thread_server(app) as url:
        response = httpx.get(f"{url}/v2/models/digits", headers={"Host": host})
    assert response.status_code == status
    if status == 400:
        allowed = sorted({"localhost", "127.0.0.1", "::1", *(allowed_hosts or ())})
        assert response.json() == {
            "error": f"This server does not answer for the Host {host!r}: it accepts {allowed} (any port). Connect through "
            "one of these names, or start the server with --allowed-host NAME (allowed_hosts=) for the name your clients use."
        }
        assert app.state.ledger.as_dict()["refused"] == {"host": 1}
    else:
        assert response.json()["name"] == "digits"


def test_model_error_text_stays_on_the_server(caplog):
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 3, 200), rng.normal(size=200)]).astype(float)
    y = ((X[:, 0] == 1) ^ (X[:, 1] > 0)).astype(int)
    encode = make_column_transformer((OneHotEncoder(handle_unknown="error"), [0]), remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="Found unknown categories"):  # what the model says of a category it never saw
        model.predict([[7.0, 0.5]])
    caplog.set_level(logging.WARNING, logger="db3learn.serve")
    with thread_server(create_app(model, model_name="secret-model")) as url:
        response = httpx.post(f"{url}/v1/models/secret-model:predict", json={"instances": [[7.0, 0.5]]})
        good = httpx.post(f"{url}/v1/models/secret-model:predict", json={"instances": X[:3].tolist()})
    assert response.status_code == 400
    assert response.json() == {
        "error": "The model could not answer this request: check the input's shape and dtype against GET /v2/models/secret-model."
    }
    assert good.json() == {"predictions": model.predict(X[:3]).tolist()}
    [record] = [r for r in caplog.records if r.name == "db3learn.serve"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "Model 'secret-model' could not answer 1 rows of shape [1, 2]: ValueError: Found unknown categories"
    )


def test_serve_reads_the_key_from_the_environment_and_allows_its_host(svc_file, svc, digits, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=rf"The environment variable {KEY_ENV} \(--api-key-env\) is not set or empty"):
        serve(svc_file, api_key_env=KEY_ENV, port=9)  # refused before any socket is opened

    port, log = free_port(), tmp_path / "serve.log"
    code = f"from db3learn.serve import serve; serve({str(svc_file)!r}, host='127.0.0.2', port={port}, api_key_env={KEY_ENV!r})"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, KEY_ENV: KEY}
        )
    try:
        url = f"http://127.0.0.2:{port}"

        def ready():
            assert proc.poll() is None, log.read_text()
            try:
                return (
                    httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
                )  # Host: 127.0.0.2:PORT, allowed
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "serve() on 127.0.0.2")
        assert httpx.get(f"{url}/v2/models/digits-svc").status_code == 401
        assert httpx.get(f"{url}/v2/health/ready", headers={"Host": "evil.example"}).status_code == 400
        monkeypatch.setenv(KEY_ENV, KEY)
        X = digits[2][:30]
        np.testing.assert_array_equal(RemoteTeacher(url, "digits-svc", api_key_env=KEY_ENV).predict(X), svc.predict(X))
    finally:
        proc.kill()
        proc.wait(timeout=20)
    text = log.read_text()
    assert f"API key from ${KEY_ENV} required" in text and "POST /v2/models/digits-svc/infer" in text
    assert KEY not in text


def test_cli_serve_flags(svc_file, digits, monkeypatch):
    from .servers import ServeProcess

    monkeypatch.setenv(KEY_ENV, KEY)
    args = (
        "--api-key-env",
        KEY_ENV,
        "--allowed-host",
        "teacher.internal",
        "--max-rows",
        "5",
        "--max-body-bytes",
        "100000",
    )
    with ServeProcess(svc_file, free_port(), *args) as server:
        assert httpx.get(f"{server.url}/v2/models/digits-svc").status_code == 401
        assert httpx.get(f"{server.url}/v2/health/ready", headers={"Host": "teacher.internal:80"}).status_code == 200
        assert httpx.get(f"{server.url}/v2/health/ready", headers={"Host": "evil.example"}).status_code == 400
        big = httpx.post(
            f"{server.url}/v1/models/digits-svc:predict",
            content=b"x" * 100_001,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert big.status_code == 413 and "limit of 100,000 bytes" in big.json()["error"]
        with pytest.raises(RemoteTeacherError, match=r"limit of 5 \(max_rows="):
            RemoteTeacher(server.url, "digits-svc", api_key_env=KEY_ENV, batch_size=6).predict(digits[2][:6])
