"""``db3learn serve``: a saved classifier as a label-only HTTP endpoint.

The endpoint speaks the Open Inference Protocol REST API (V2: health,
metadata, readiness and ``POST /v2/models/{name}/infer``) and the
TF-Serving/KServe V1 predict API, and answers with labels only, as the
black-box teachers of DB3KD do. It is meant for demos and tests on
127.0.0.1: it has no authentication. For fault tests it can inject HTTP 5xx,
429 with ``Retry-After``, slow answers and stalls (:class:`Faults`), and it
counts the rows it receives and answers, optionally writing a digest of each
answered row to a ledger file, so that a test can prove no row was asked
twice.
"""

import asyncio
import ipaddress
import random
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from . import __version__
from ._remote import decode_v2_tensor, v2_datatype
from ._teachers import _row_keys
from .io import SavedStudent, load_model

__all__ = ["Faults", "create_app", "serve"]

FAULT_KINDS = ("500", "503", "429", "slow")
INPUT_NAME = "input-0"
OUTPUT_NAME = "label"


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
        Once this many rows have been answered, every later inference
        request is held for ``stall_seconds`` and then refused with 503:
        a test can kill a client or the server mid-run at a known point.
    stall_seconds : float, default=60.0
    seed : int, default=0
    """

    fail_rate: float = 0.0
    kinds: tuple = FAULT_KINDS
    latency: float = 0.0
    slow_seconds: float = 5.0
    retry_after: int = 1
    stall_after: Optional[int] = None
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
    parameters: Optional[dict] = None
    data: Any


class _RequestedOutput(BaseModel):
    name: str
    parameters: Optional[dict] = None


class _InferRequest(BaseModel):
    id: Optional[str] = None
    parameters: Optional[dict] = None
    inputs: list[_Tensor]
    outputs: Optional[list[_RequestedOutput]] = None


class _PredictRequest(BaseModel):
    signature_name: Optional[str] = None
    instances: list


class _BadRequest(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class _Ledger:
    """What the server saw: requests, rows received and answered, faults; digests of answered rows."""

    def __init__(self, path=None):
        self.path = path
        self.requests = 0
        self.rows_received = 0
        self.rows_answered = 0
        self.stalled = 0
        self.faults = Counter()
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
            }


def _n_features(model):
    n = getattr(model, "n_features_in_", None)
    return int(n) if n is not None else None


def _output_tensor(labels):
    labels = np.asarray(labels)
    if labels.dtype.kind in "OUS":
        labels = labels.astype(str)
    return {"name": OUTPUT_NAME, "shape": [len(labels)], "datatype": v2_datatype(labels.dtype), "data": labels.tolist()}


def create_app(model, *, model_name, faults=None, ledger=None):
    """A FastAPI application serving ``model``'s labels under ``model_name``.

    Routes (Open Inference Protocol REST, then V1, then db3learn's own):
    ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``,
    ``GET /v2/models/{name}`` (metadata: one input ``"input-0"`` of shape
    ``[-1, n_features]``, one output ``"label"``),
    ``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``;
    ``GET /v1/models/{name}`` (``{"name", "ready"}``),
    ``POST /v1/models/{name}:predict`` (``{"instances": rows}`` ->
    ``{"predictions": labels}``); ``GET /db3learn/stats`` (requests, rows
    received and answered, repeated rows, faults injected). Errors are
    ``{"error": message}`` with HTTP 400 (bad request) or 404 (unknown model).

    Parameters
    ----------
    model : object with ``predict(X)``
        Receives 2-D float arrays; its labels are returned as they come.
    model_name : str
    faults : Faults or None, default=None
        Faults to inject; ``None`` injects none.
    ledger : str, path or None, default=None
        File to which a hex digest of each answered row is appended, one
        per line (the digest of :class:`~db3learn.Teacher`'s cache).

    Returns
    -------
    app : fastapi.FastAPI
        ``app.state.ledger.as_dict()`` gives the counts served at
        ``/db3learn/stats``.
    """
    faults = faults or Faults()
    rng = random.Random(faults.seed)
    book = _Ledger(ledger)
    n_features = _n_features(model)
    platform = "pytorch" if isinstance(model, SavedStudent) else "sklearn"
    classes = getattr(model, "classes_", None)
    label_datatype = _output_tensor(np.asarray(classes)[:0])["datatype"] if classes is not None else "INT64"
    input_datatype = "FP32" if platform == "pytorch" else "FP64"
    model_lock = threading.Lock()

    app = FastAPI(title=f"db3learn serve: {model_name}", version=__version__, docs_url=None, redoc_url=None)
    app.state.ledger = book
    app.state.faults = faults

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

    def check_name(name):
        if name != model_name:
            raise _BadRequest(f"Unknown model {name!r}; this server serves {model_name!r}.", 404)

    def check_rows(X):
        if X.ndim != 2 or (n_features is not None and X.shape[1] != n_features):
            want = f"[n_rows, {n_features}]" if n_features is not None else "[n_rows, n_features]"
            raise _BadRequest(f"Expected rows of shape {want}; got shape {list(X.shape)}.")
        if X.dtype.kind not in "biuf" or not np.isfinite(X.astype(np.float64)).all():
            raise _BadRequest("Expected finite numbers in the input rows.")

    async def answer(X):
        """Labels for ``X``, after the injected faults; a JSONResponse when a fault answers instead."""
        with book._lock:
            book.rows_received += len(X)
            stall = faults.stall_after is not None and book.rows_answered >= faults.stall_after
            if stall:
                book.stalled += 1
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
                    {"error": "Too many requests (fault injection)."}, status_code=429, headers={"Retry-After": str(faults.retry_after)}
                )
            else:
                return error(f"Injected failure (fault injection): HTTP {kind}.", int(kind))

        def predict():
            with model_lock:
                return np.asarray(model.predict(X))

        try:
            labels = await run_in_threadpool(predict)
        except ValueError as exc:
            raise _BadRequest(f"The model refused the input: {exc}") from exc
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

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str):
        check_name(name)
        return {
            "name": model_name,
            "platform": platform,
            "inputs": [{"name": INPUT_NAME, "datatype": input_datatype, "shape": [-1, n_features if n_features is not None else -1]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": label_datatype, "shape": [-1]}],
        }

    @app.get("/v2/models/{name}/ready")
    @app.get("/v1/models/{name}")  # V1's model ready: the same {"name", "ready"} object
    async def model_ready(name: str):
        check_name(name)
        return {"name": model_name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, body: _InferRequest):
        check_name(name)
        if len(body.inputs) != 1:
            raise _BadRequest(f"Expected one input tensor; got {len(body.inputs)}.")
        requested = [o.name for o in body.outputs or []]
        if any(o != OUTPUT_NAME for o in requested):
            raise _BadRequest(f"Unknown outputs {requested}; this model has one output, {OUTPUT_NAME!r}.")
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


def serve(model_path, *, model_name=None, host="127.0.0.1", port=8080, trusted=None, faults=None, ledger=None, access_log=True):
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
        The endpoint has no authentication: keep it on a loopback address.
    port : int, default=8080
    trusted : list of str or None, default=None
        Extra types to trust in a ``.skops`` file, see :func:`~db3learn.io.load_model`.
    faults : Faults or None, default=None
    ledger : str, path or None, default=None
        See :func:`create_app`.
    access_log : bool, default=True
        Log each request (method, path, status; never headers) on stderr.

    Raises
    ------
    UntrustedModelError, ValueError, FileNotFoundError
        From :func:`~db3learn.io.load_model`.
    """
    import uvicorn

    path = Path(model_path)
    model = load_model(path, trusted=trusted)
    if model_name is None:
        model_name = path.resolve().name if path.is_dir() else path.stem
    name = model_name
    app = create_app(model, model_name=name, faults=faults, ledger=ledger)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"db3learn serve: warning: {host} is not a loopback address, and this endpoint has no authentication.", file=sys.stderr)
    print(
        f"db3learn serve: {path} as model {name!r} on http://{host}:{port} "
        f"(V2: POST /v2/models/{name}/infer, V1: POST /v1/models/{name}:predict)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
