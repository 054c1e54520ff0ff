"""``db3learn serve``: a saved classifier as a label-only HTTP endpoint.

The endpoint speaks the Open Inference Protocol REST API (V2: health,
metadata, readiness and ``POST /v2/models/{name}/infer``) and the
TF-Serving/KServe V1 predict API, and answers with labels only, as the
black-box teachers of DB3KD do. It is meant for demos and tests on
127.0.0.1. Before a request reaches the model it is checked: its ``Host``
header must name this server (the loopback names by default, against DNS
rebinding), it must carry the API key when one is set (``Authorization:
Bearer KEY``; off by default), and its body and rows must be within the
limits (32 MiB, 65,536 rows by default), counted before the body is parsed.
The key is a shared secret over plain HTTP: off loopback, put the server
behind a TLS proxy. For fault tests it can inject HTTP 5xx,
429 with ``Retry-After``, slow answers and stalls (:class:`Faults`), and it
counts the rows it receives and answers, optionally writing a digest of each
answered row to a ledger file, so that a test can prove no row was asked
twice.
"""

import asyncio
import hmac
import ipaddress
import logging
import os
import random
import re
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from . import __version__
from ._remote import decode_v2_tensor, v2_datatype
from ._teachers import _row_keys
from .io import SavedStudent, load_model

__all__ = ["Faults", "create_app", "serve"]

logger = logging.getLogger(__name__)

FAULT_KINDS = ("500", "503", "429", "slow")
INPUT_NAME = "input-0"
OUTPUT_NAME = "label"
# 32 MiB: a 4096-row batch of MNIST pixels (784 values, multiples of 1/255) is 21.5 MiB of JSON; rows of
# arbitrary floats, such as boundary-search queries, take about 15 KiB each, so RemoteTeacher's default
# batch of 1024 of them (14.8 MiB) fits twice.
MAX_BODY_BYTES = 32 * 2**20
MAX_ROWS = 65_536
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")  # answered without the API key: liveness and readiness probes
_HOST_HEADER = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::[0-9]{1,5})?")


@dataclass
class Faults:
    """Faults to inject into inference requests (V2 ``infer`` and V1 ``predict``).

    Parameters
    ----------
    fail_rate : float, default=0.0
        Probability in [0, 1] that a request meets one of ``kinds``, drawn
        with a generator seeded by ``seed``.
    kinds : tuple of str, default=("500", "503", "429", "slow")
        ``"500"``, ``"503"``: that HTTP status. ``"429"``: Too Many Requests
        with ``Retry-After: retry_after``. ``"slow"``: the answer comes
        after ``slow_seconds`` (a client with a shorter timeout gives up).
    latency : float, default=0.0
        Seconds added to every inference answer.
    slow_seconds : float, default=5.0
    retry_after : int, default=1
        Seconds, sent in the ``Retry-After`` header of a 429.
    stall_after : int or None, default=None
        Once requests holding this many rows have been let through (answered,
        being answered, or refused by another injected fault), every later
        inference request is held for ``stall_seconds`` and then refused with 503:
        a test can kill a client or the server mid-run at a known point.
    stall_seconds : float, default=60.0
    seed : int, default=0
    """

    fail_rate: float = 0.0
    kinds: tuple = FAULT_KINDS
    latency: float = 0.0
    slow_seconds: float = 5.0
    retry_after: int = 1
    stall_after: int | None = None
    stall_seconds: float = 60.0
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be in [0, 1]; got {self.fail_rate!r}.")
        self.kinds = tuple(self.kinds)
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"Fault kinds must be among {list(FAULT_KINDS)}; got {list(self.kinds)}.")
        for name in ("latency", "slow_seconds", "retry_after", "stall_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds; got {getattr(self, name)!r}.")


class _Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict | None = None
    data: Any


class _RequestedOutput(BaseModel):
    name: str
    parameters: dict | None = None


class _InferRequest(BaseModel):
    id: str | None = None
    parameters: dict | None = None
    inputs: list[_Tensor]
    outputs: list[_RequestedOutput] | None = None


class _PredictRequest(BaseModel):
    signature_name: str | None = None
    instances: list


class _BadRequest(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def _host_name(header):
    """The host name of a ``Host`` header, lower case, without port or IPv6 brackets; None if malformed."""
    match = _HOST_HEADER.fullmatch((header or "").strip().lower())
    return match["name"].strip("[]") if match else None


class _Secret:
    """An API key that ``repr`` and ``str`` do not show; compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value.encode()

    def __repr__(self):
        return "<hidden>"

    __str__ = __repr__

    def matches(self, token):
        return hmac.compare_digest(token, self._value)


class _Guard:
    """ASGI middleware: refuses a request before the application reads it.

    In order: a ``Host`` header not in ``allowed_hosts`` (400), a missing or
    wrong API key (401), a body longer than ``max_body_bytes`` (413, by its
    ``Content-Length`` or, for a chunked body, as it arrives). A body within
    the limit is read whole and handed on; so no request body larger than
    the limit is held in memory or parsed.
    """

    def __init__(self, app, *, book, allowed_hosts, api_key, max_body_bytes):
        self.app = app
        self.book = book
        self.allowed_hosts = allowed_hosts  # lower-case names, or None for any
        self.api_key = api_key  # a _Secret, or None
        self.max_body_bytes = max_body_bytes

    def _refuse(self, reason, message, status, headers=None):
        with self.book._lock:
            self.book.refused[reason] += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def _check(self, scope, headers):
        """The refusal of a request by its headers, or None."""
        if self.allowed_hosts is not None:
            name = _host_name(headers.get("host"))
            if name not in self.allowed_hosts:
                return self._refuse(
                    "host",
                    f"This server does not answer for the Host {headers.get('host')!r}: it accepts "
                    f"{sorted(self.allowed_hosts)} (any port). Connect through one of these names, or start the server "
                    "with --allowed-host NAME (allowed_hosts=) for the name your clients use.",
                    400,
                )
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return self._refuse(
                    "api_key",
                    "This server requires an API key: send it in the header `Authorization: Bearer KEY` "
                    "(RemoteTeacher(api_key_env=NAME) does).",
                    401,
                    {"WWW-Authenticate": 'Bearer realm="db3learn"'},
                )
            if not self.api_key.matches(token.strip().encode("latin-1")):  # header values are latin-1
                return self._refuse(
                    "api_key",
                    "The API key in the Authorization header was refused: check it against the server's.",
                    401,
                    {"WWW-Authenticate": 'Bearer realm="db3learn", error="invalid_token"'},
                )
        declared = headers.get("content-length")
        if (
            declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes
        ):  # the server checked its form
            return self._too_large(f" of {int(declared):,} bytes")
        return None

    def _too_large(self, size):
        return self._refuse(
            "body_size",
            f"The request body{size} is larger than this server's limit of {self.max_body_bytes:,} bytes "
            "(max_body_bytes=, `db3learn serve --max-body-bytes`): send fewer rows per request "
            "(RemoteTeacher(batch_size=...)).",
            413,
            {"Connection": "close"},
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope, Headers(scope=scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # a chunked body, or one longer than its Content-Length said
                await self._too_large("")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class _Ledger:
    """What the server saw: requests, rows received and answered, faults; digests of answered rows."""

    def __init__(self, path=None):
        self.path = path
        self.requests = 0
        self.rows_received = 0
        self.rows_answered = 0
        self.rows_admitted = 0  # rows let past the stall check (answered, or being answered)
        self.stalled = 0
        self.faults = Counter()
        self.refused = Counter()
        self._answered = Counter()
        self._file = open(path, "a", encoding="ascii") if path is not None else None  # noqa: SIM115 - kept open while serving
        self._lock = threading.Lock()

    def answered(self, X):
        keys = [k.hex() for k in _row_keys(X)]
        with self._lock:
            self.rows_answered += len(keys)
            self._answered.update(keys)
            if self._file is not None:
                self._file.write("".join(k + "\n" for k in keys))
                self._file.flush()

    def as_dict(self):
        with self._lock:
            return {
                "requests": self.requests,
                "rows_received": self.rows_received,
                "rows_answered": self.rows_answered,
                "distinct_rows_answered": len(self._answered),
                "repeated_rows_answered": self.rows_answered - len(self._answered),
                "stalled": self.stalled,
                "faults": dict(self.faults),
                "refused": dict(self.refused),
            }


def _n_features(model):
    n = getattr(model, "n_features_in_", None)
    return int(n) if n is not None else None


def _feature_names(model):
    """The column names the model was fitted on (``feature_names_in_``), as strings; None without them."""
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _column_datatypes(model, names):
    """The best-known V2 datatype of each of the model's input columns.

    A fitted encoder with ``categories_`` (a ``OneHotEncoder`` or
    ``OrdinalEncoder``, in a ``Pipeline`` or ``ColumnTransformer``) tells
    the type of the columns it encodes, known by its ``feature_names_in_``
    or by the column names its ``ColumnTransformer`` gives it: ``BYTES``
    for string categories, else the categories' number type. A saved table
    student tells the same from the categories it was distilled on. Other
    columns: ``FP64``.
    """
    known = {}

    def visit(estimator, depth, columns):
        if depth > 10 or estimator is None or isinstance(estimator, str):
            return
        own = getattr(estimator, "feature_names_in_", None)
        columns = columns if own is None else [str(c) for c in own]
        categories = getattr(estimator, "categories_", None)
        if isinstance(categories, list) and columns is not None and len(categories) == len(columns):
            for column, values in zip(columns, categories):
                datatype = _category_datatype(values)
                if datatype is not None:
                    known.setdefault(column, datatype)
        for step in getattr(estimator, "steps", None) or ():  # a Pipeline: its first steps see its columns
            visit(step[1], depth + 1, columns)
        for item in getattr(estimator, "transformers_", None) or ():  # a ColumnTransformer: (name, how, columns)
            selected = item[2] if len(item) > 2 else None
            if not (isinstance(selected, list) and all(isinstance(c, str) for c in selected)):
                selected = None
            visit(item[1], depth + 1, selected)

    columns = getattr(model, "_columns", None)  # a saved table student: its categorical columns' categories
    if isinstance(model, SavedStudent) and columns is not None and columns.names is not None:
        for column, categories in zip(columns.names, columns.categories):
            datatype = None if categories is None or not len(categories) else _category_datatype(categories.tolist())
            if datatype is not None:
                known[str(column)] = datatype
    visit(model, 0, None)
    return [known.get(name, "FP64") for name in names]


def _category_datatype(values):
    """The V2 datatype of a column with these categories: ``BYTES`` for strings, else their number type (None if none)."""
    kind = np.asarray(values).dtype
    if kind.kind in "OUS":
        return "BYTES"
    try:
        return v2_datatype(kind)
    except ValueError:
        return None


def _json_kind(value):
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, int):
        return "integers"
    if isinstance(value, float):
        return "floats"
    if isinstance(value, str):
        return "strings"
    return "null" if value is None else type(value).__name__


def _output_tensor(labels):
    labels = np.asarray(labels)
    if labels.dtype.kind in "OUS":
        labels = labels.astype(str)
    return {"name": OUTPUT_NAME, "shape": [len(labels)], "datatype": v2_datatype(labels.dtype), "data": labels.tolist()}


def create_app(
    model,
    *,
    model_name,
    faults=None,
    ledger=None,
    api_key=None,
    allowed_hosts=None,
    max_body_bytes=MAX_BODY_BYTES,
    max_rows=MAX_ROWS,
):
    """A FastAPI application serving ``model``'s labels under ``model_name``.

    Routes (Open Inference Protocol REST, then V1, then db3learn's own):
    ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``,
    ``GET /v2/models/{name}`` (metadata: one input ``"input-0"`` of shape
    ``[-1, n_features]``, one output ``"label"``; for a model fitted on a
    DataFrame, one input per column instead, see below),
    ``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``;
    ``GET /v1/models/{name}`` (``{"name", "ready"}``),
    ``POST /v1/models/{name}:predict`` (``{"instances": rows}`` ->
    ``{"predictions": labels}``); ``GET /db3learn/stats`` (requests, rows
    received and answered, repeated rows, faults injected, requests
    refused). Errors are ``{"error": message}`` with HTTP 400 (bad request,
    or a ``Host`` not allowed), 401 (API key missing or wrong, with
    ``WWW-Authenticate: Bearer``), 404 (unknown model) or 413 (body or
    rows past the limits).

    **Tables.** A V2 request with several inputs, or with the request
    parameter ``"content_type": "pd"``, is a table sent as MLServer's and
    KServe's pandas codec sends a DataFrame: one input per column, named by
    the column, of shape ``[n_rows]`` or ``[n_rows, 1]``, numbers or
    ``BYTES`` (UTF-8 strings). A V1 request whose instances are objects is
    a table too, one object per row, ``{column: value}`` or KServe's
    ``{column: [value]}``. The model gets a pandas DataFrame with those
    columns (strings as Python ``str`` in object columns), in the order of
    its ``feature_names_in_`` when it has them: the inputs must then name
    exactly those columns. For such a model (a ``Pipeline`` fitted on a
    DataFrame), the metadata lists one input per column, of shape
    ``[-1, 1]``, with the datatype its encoders tell (``BYTES`` for string
    categories of a ``OneHotEncoder`` or ``OrdinalEncoder``, else ``FP64``),
    and the parameter ``"content_type": "pd"``. A table's rows count
    against ``max_rows`` as rows, whatever the number of columns.

    Every request is checked before the application reads its body: its
    ``Host`` header (against DNS rebinding: a web page whose name is made to
    resolve to 127.0.0.1 sends its own name), then its API key, then its
    body's size, by ``Content-Length`` and, for a chunked body, as it
    arrives. When ``model.predict`` raises ``ValueError``, the client gets a
    generic message and the exception is logged on the ``db3learn.serve``
    logger, since its text may tell more about the model than its labels.

    Parameters
    ----------
    model : object with ``predict(X)``
        Receives 2-D float arrays, or DataFrames for tables (see above);
        its labels are returned as they come.
    model_name : str
    faults : Faults or None, default=None
        Faults to inject; ``None`` injects none.
    ledger : str, path or None, default=None
        File to which a hex digest of each answered row is appended, one
        per line (the digest of :class:`~db3learn.Teacher`'s cache).
    api_key : str or None, default=None
        When given, every request but ``GET /v2/health/live`` and ``GET
        /v2/health/ready`` must carry ``Authorization: Bearer <api_key>``
        (compared in constant time); ``None`` asks for no key.
    allowed_hosts : list of str or None, default=None
        Host names (without port; IPv6 addresses with or without brackets)
        accepted in the ``Host`` header, on top of ``localhost``,
        ``127.0.0.1`` and ``::1``, which are always accepted, with any port.
        ``["*"]`` accepts any ``Host``: only behind a proxy that checks it.
        (FastAPI's ``TestClient`` sends ``Host: testserver``: give it
        ``base_url="http://127.0.0.1"``.)
    max_body_bytes : int, default=33554432 (32 MiB)
        Largest request body, in bytes. 32 MiB holds 4096 rows of MNIST
        pixels, or about 2200 rows of 784 arbitrary floats, as JSON.
    max_rows : int, default=65536
        Most rows in one inference request.

    Returns
    -------
    app : fastapi.FastAPI
        ``app.state.ledger.as_dict()`` gives the counts served at
        ``/db3learn/stats``.

    Raises
    ------
    ValueError
        If ``api_key`` is empty, ``max_body_bytes`` or ``max_rows`` is not a
        positive integer, or ``allowed_hosts`` is a single string.
    """
    for name, value in (("max_body_bytes", max_body_bytes), ("max_rows", max_rows)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ValueError("api_key must be a non-empty string, or None for no key.")
    if isinstance(allowed_hosts, str):
        raise ValueError(f"allowed_hosts must be a list of host names, such as [{allowed_hosts!r}]; got a string.")
    hosts = [h.strip().lower().strip("[]") for h in allowed_hosts or ()]
    hosts = None if "*" in hosts else frozenset(LOOPBACK_HOSTS).union(hosts)
    faults = faults or Faults()
    rng = random.Random(faults.seed)
    book = _Ledger(ledger)
    n_features = _n_features(model)
    feature_names = _feature_names(model)
    n_columns = len(feature_names) if feature_names is not None else n_features
    platform = "pytorch" if isinstance(model, SavedStudent) else "sklearn"
    classes = getattr(model, "classes_", None)
    label_datatype = _output_tensor(np.asarray(classes)[:0])["datatype"] if classes is not None else "INT64"
    input_datatype = "FP32" if platform == "pytorch" else "FP64"
    model_lock = threading.Lock()

    app = FastAPI(title=f"db3learn serve: {model_name}", version=__version__, docs_url=None, redoc_url=None)
    app.state.ledger = book
    app.state.faults = faults
    app.state.limits = {"max_body_bytes": int(max_body_bytes), "max_rows": int(max_rows)}

    def error(message, status=400):
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return error(f"Malformed request body: {problems}.")

    @app.exception_handler(_BadRequest)
    async def _bad(request, exc):
        return error(str(exc), exc.status)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        with book._lock:
            book.requests += 1
        return await call_next(request)

    key = None if api_key is None else _Secret(api_key)
    app.add_middleware(
        _Guard, book=book, allowed_hosts=hosts, api_key=key, max_body_bytes=int(max_body_bytes)
    )  # outermost

    def check_name(name):
        if name != model_name:
            raise _BadRequest(f"Unknown model {name!r}; this server serves {model_name!r}.", 404)

    def check_n_rows(n_rows):
        if n_rows > max_rows:
            with book._lock:
                book.refused["rows"] += 1
            raise _BadRequest(
                f"{n_rows:,} rows in one request are more than this server's limit of {max_rows:,} (max_rows=, "
                "`db3learn serve --max-rows`): send fewer rows per request (RemoteTeacher(batch_size=...)).",
                413,
            )

    def check_rows(X):
        if X.ndim != 2 or (n_features is not None and X.shape[1] != n_features):
            want = f"[n_rows, {n_features}]" if n_features is not None else "[n_rows, n_features]"
            raise _BadRequest(f"Expected rows of shape {want}; got shape {list(X.shape)}.")
        if X.dtype.kind not in "biuf" or not np.isfinite(X.astype(np.float64)).all():
            raise _BadRequest("Expected finite numbers in the input rows.")

    def table(columns):
        """A DataFrame of ``columns`` ({name: 1-D array}), in the model's column order; strings as objects."""
        try:
            import pandas as pd
        except ImportError:
            raise _BadRequest(
                "This server reads tables (one input per column) into a pandas DataFrame, and pandas is not "
                "installed where it runs: pip install pandas."
            ) from None
        names = list(columns)
        if feature_names is not None:
            expected = set(feature_names)
            missing = [c for c in feature_names if c not in columns]
            unexpected = [c for c in names if c not in expected]
            if missing or unexpected:
                problems = [f"lack the columns {missing[:10]}"] if missing else []
                problems += [f"have unexpected columns {unexpected[:10]}"] if unexpected else []
                raise _BadRequest(
                    f"The inputs {' and '.join(problems)}; expected one input per column the model was fitted "
                    f"on: {feature_names[:30]}{' ...' if len(feature_names) > 30 else ''}."
                )
            names = feature_names
        elif n_features is not None and len(names) != n_features:
            raise _BadRequest(f"Expected {n_features} columns, one input each; got {len(names)}: {names[:10]}.")
        data = {}
        for name in names:
            values = columns[name]
            if values.dtype.kind in "US":
                data[name] = pd.Series(values.tolist(), dtype=object)
            elif values.dtype.kind not in "biuf" or not np.isfinite(values.astype(np.float64)).all():
                raise _BadRequest(f"Column {name!r} must hold finite numbers, booleans or strings.")
            else:
                data[name] = pd.Series(values)
        return pd.DataFrame(data)

    def v2_table(tensors):
        """The DataFrame of a V2 request with one input per column (MLServer's and KServe's pandas codec)."""
        for t in tensors:
            if len(t.shape) not in (1, 2) or t.shape[1:] not in ([], [1]):
                raise _BadRequest(
                    f"Input {t.name!r} has shape {t.shape}; a table's inputs are its columns, each of shape "
                    "[n_rows] or [n_rows, 1]."
                )
        if n_columns is not None and len(tensors) > n_columns:  # before any decoding: no more inputs than columns
            raise _BadRequest(
                f"Expected {n_columns} inputs, one per column the model was fitted on; got {len(tensors)}."
            )
        rows = {t.name: t.shape[0] for t in tensors}
        check_n_rows(max(rows.values()))
        if len(set(rows.values())) > 1:
            raise _BadRequest(f"The inputs are columns of one table and must have as many rows each; got {rows}.")
        columns = {}
        for t in tensors:
            if t.name in columns:
                raise _BadRequest(f"Two inputs are named {t.name!r}; a table's columns have distinct names.")
            content_type = (t.parameters or {}).get("content_type")
            if content_type not in (None, "str", "np"):
                raise _BadRequest(
                    f"Input {t.name!r} has content_type {content_type!r}; this server reads numbers and UTF-8 "
                    "strings (content_type 'str' or none)."
                )
            try:
                columns[t.name] = decode_v2_tensor(t.model_dump(), where=f"input {t.name!r}").reshape(-1)
            except ValueError as exc:
                raise _BadRequest(str(exc)) from None
        return table(columns)

    def v1_table(instances):
        """The DataFrame of V1 instances that are objects: ``{column: value}`` or KServe's ``{column: [value]}``."""
        names = list(instances[0])
        for k, instance in enumerate(instances):
            if set(instance) != set(names):
                raise _BadRequest(
                    f"Instance {k} has the columns {sorted(instance)[:10]}; instance 0 has {sorted(names)[:10]}. "
                    "Every instance must name the same columns."
                )
        columns = {}
        for name in names:
            values = []
            for instance in instances:
                value = instance[name]
                if isinstance(value, list):
                    if len(value) != 1:
                        raise _BadRequest(
                            f"Column {name!r} of an instance holds {len(value)} values; an instance is one row: "
                            "one value per column, or a one-element list as KServe sends."
                        )
                    value = value[0]
                values.append(value)
            kinds = {_json_kind(v) for v in values}
            dtype = {
                frozenset({"strings"}): str,
                frozenset({"booleans"}): np.bool_,
                frozenset({"integers"}): np.int64,
                frozenset({"floats"}): np.float64,
                frozenset({"integers", "floats"}): np.float64,
            }.get(frozenset(kinds))
            if dtype is None:
                raise _BadRequest(
                    f"Column {name!r} holds {' and '.join(sorted(kinds))}; expected numbers, booleans or strings, "
                    "one type per column."
                )
            try:
                columns[name] = np.asarray(values, dtype=dtype)
            except OverflowError:
                raise _BadRequest(f"Column {name!r} holds integers too large for 64 bits.") from None
        return table(columns)

    async def answer(X):
        """Labels for ``X``, after the injected faults; a JSONResponse when a fault answers instead."""
        with book._lock:
            book.rows_received += len(X)
            # decided on the rows already let through, not those answered: requests that arrive while
            # earlier ones are still being answered cannot slip past the stall point
            stall = faults.stall_after is not None and book.rows_admitted >= faults.stall_after
            if stall:
                book.stalled += 1
            else:
                book.rows_admitted += len(X)
        if stall:
            try:
                await asyncio.sleep(faults.stall_seconds)
            finally:
                with book._lock:
                    book.stalled -= 1
            return error("Stalled (fault injection).", 503)
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.fail_rate and rng.random() < faults.fail_rate:
            kind = rng.choice(faults.kinds)
            with book._lock:
                book.faults[kind] += 1
            if kind == "slow":
                await asyncio.sleep(faults.slow_seconds)
            elif kind == "429":
                return JSONResponse(
                    {"error": "Too many requests (fault injection)."},
                    status_code=429,
                    headers={"Retry-After": str(faults.retry_after)},
                )
            else:
                return error(f"Injected failure (fault injection): HTTP {kind}.", int(kind))

        def predict():
            with model_lock:
                return np.asarray(model.predict(X))

        try:
            labels = await run_in_threadpool(predict)
        except (ValueError, TypeError) as exc:  # the model's text may describe it: log it, answer in general terms
            logger.warning(
                "Model %r could not answer %d rows of shape %s: %s: %s",
                model_name,
                len(X),
                list(X.shape),
                type(exc).__name__,
                exc,
            )
            raise _BadRequest(
                f"The model could not answer this request: check the input's shape and dtype against GET /v2/models/{model_name}."
            ) from None
        book.answered(X)
        return labels

    # -- Open Inference Protocol (V2) ----------------------------------------------
    @app.get("/v2")
    async def server_metadata():
        return {"name": "db3learn", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def server_ready():
        return {"ready": True}

    if feature_names is None:
        metadata_inputs = [
            {
                "name": INPUT_NAME,
                "datatype": input_datatype,
                "shape": [-1, n_features if n_features is not None else -1],
            }
        ]
    else:  # a table: one input per column, as MLServer's pandas codec sends it
        metadata_inputs = [
            {"name": column, "datatype": datatype, "shape": [-1, 1]}
            | ({"parameters": {"content_type": "str"}} if datatype == "BYTES" else {})
            for column, datatype in zip(feature_names, _column_datatypes(model, feature_names))
        ]

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str):
        check_name(name)
        metadata = {
            "name": model_name,
            "platform": platform,
            "inputs": metadata_inputs,
            "outputs": [{"name": OUTPUT_NAME, "datatype": label_datatype, "shape": [-1]}],
        }
        if feature_names is not None:
            metadata["parameters"] = {"content_type": "pd"}
        return metadata

    @app.get("/v2/models/{name}/ready")
    @app.get("/v1/models/{name}")  # V1's model ready: the same {"name", "ready"} object
    async def model_ready(name: str):
        check_name(name)
        return {"name": model_name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, body: _InferRequest):
        check_name(name)
        if not body.inputs:
            raise _BadRequest("Expected one input tensor, or one input per column of a table; got none.")
        requested = [o.name for o in body.outputs or []]
        if any(o != OUTPUT_NAME for o in requested):
            raise _BadRequest(f"Unknown outputs {requested}; this model has one output, {OUTPUT_NAME!r}.")
        if len(body.inputs) > 1 or (body.parameters or {}).get("content_type") == "pd":
            X = v2_table(body.inputs)
        else:
            shape = body.inputs[0].shape
            check_n_rows(shape[0] if shape else 1)
            try:
                X = decode_v2_tensor(body.inputs[0].model_dump(), where=f"input {body.inputs[0].name!r}")
            except ValueError as exc:
                raise _BadRequest(str(exc)) from None
            check_rows(X)
        labels = await answer(X)
        if isinstance(labels, JSONResponse):
            return labels
        response = {"model_name": model_name, "outputs": [_output_tensor(labels)]}
        if body.id is not None:
            response["id"] = body.id
        return response

    # -- TF-Serving / KServe V1 -------------------------------------------------------
    @app.post("/v1/models/{name}:predict")
    async def v1_predict(name: str, body: _PredictRequest):
        check_name(name)
        check_n_rows(len(body.instances))
        objects = [isinstance(i, dict) for i in body.instances]
        if body.instances and all(objects):  # a table's rows, {column: value}
            X = v1_table(body.instances)
        elif any(objects):
            raise _BadRequest("Expected instances that are all rows (lists of numbers) or all objects {column: value}.")
        else:
            try:
                X = np.asarray(body.instances)
            except ValueError:
                raise _BadRequest("Expected instances as a list of rows of equal length.") from None
            check_rows(X)
        labels = await answer(X)
        if isinstance(labels, JSONResponse):
            return labels
        return {"predictions": _output_tensor(labels)["data"]}

    # -- db3learn's own ----------------------------------------------------------------
    @app.get("/db3learn/stats")
    async def stats():
        return {"model_name": model_name, **book.as_dict(), "fault_settings": asdict(faults)}

    return app


def serve(
    model_path,
    *,
    model_name=None,
    host="127.0.0.1",
    port=8080,
    trusted=None,
    faults=None,
    ledger=None,
    access_log=True,
    api_key_env=None,
    allowed_hosts=None,
    max_body_bytes=MAX_BODY_BYTES,
    max_rows=MAX_ROWS,
):
    """Serve the model saved at ``model_path`` until interrupted (``db3learn serve``).

    Parameters
    ----------
    model_path : str or path
        A ``.skops`` file or a student directory, loaded by
        :func:`db3learn.io.load_model` (never unpickled).
    model_name : str or None, default=None
        The name in the URL paths; ``None`` uses the file's or directory's
        name without its suffix.
    host : str, default="127.0.0.1"
        The address to listen on. Off loopback, set ``api_key_env`` and put
        a TLS proxy in front: the key would otherwise cross the network in
        clear. Unless it is a wildcard address (``0.0.0.0``, ``::``), it is
        added to ``allowed_hosts``.
    port : int, default=8080
    trusted : list of str or None, default=None
        Extra types to trust in a ``.skops`` file, see :func:`~db3learn.io.load_model`.
    faults : Faults or None, default=None
    ledger : str, path or None, default=None
        See :func:`create_app`.
    access_log : bool, default=True
        Log each request (method, path, status; never headers) on stderr.
    api_key_env : str or None, default=None
        Name of the environment variable holding the API key that clients
        must send as ``Authorization: Bearer KEY`` (see :func:`create_app`).
        The key is read from the environment only, so that it is not on the
        command line, and never printed. ``None``: no key.
    allowed_hosts : list of str or None, default=None
    max_body_bytes : int, default=33554432 (32 MiB)
    max_rows : int, default=65536
        See :func:`create_app`.

    Raises
    ------
    UntrustedModelError, ValueError, FileNotFoundError
        From :func:`~db3learn.io.load_model`.
    ValueError
        If ``api_key_env`` names a variable that is not set or empty, or a
        limit is not a positive integer.
    """
    import uvicorn

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ValueError(
                f"The environment variable {api_key_env} (--api-key-env) is not set or empty; it must hold the API key "
                f"clients send. Export it before starting the server, e.g. `export {api_key_env}=...`."
            )
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        loopback, wildcard = address.is_loopback, address.is_unspecified
    except ValueError:  # a name
        loopback, wildcard = host.lower() == "localhost", False
    if isinstance(allowed_hosts, str):
        raise ValueError(f"allowed_hosts must be a list of host names, such as [{allowed_hosts!r}]; got a string.")
    hosts = [*(allowed_hosts or ()), *([] if wildcard else [host])]  # the name or address clients connect to
    path = Path(model_path)
    model = load_model(path, trusted=trusted)
    if model_name is None:
        model_name = path.resolve().name if path.is_dir() else path.stem
    name = model_name
    app = create_app(
        model,
        model_name=name,
        faults=faults,
        ledger=ledger,
        api_key=api_key,
        allowed_hosts=hosts,
        max_body_bytes=max_body_bytes,
        max_rows=max_rows,
    )
    if not loopback:
        advice = (
            "put a TLS proxy in front, or the API key crosses the network in clear"
            if api_key
            else "it has no authentication: set --api-key-env"
        )
        names = (
            "; add the names clients use with --allowed-host, as requests naming another Host are refused"
            if wildcard
            else ""
        )
        print(f"db3learn serve: warning: {host} is not a loopback address: {advice}{names}.", file=sys.stderr)
    print(
        f"db3learn serve: {path} as model {name!r} on http://{host}:{port} "
        f"(V2: POST /v2/models/{name}/infer, V1: POST /v1/models/{name}:predict)"
        + (f"; API key from ${api_key_env} required" if api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
