"""RemoteTeacher: a model behind an HTTP API as a label-only teacher.

The client speaks the Open Inference Protocol ("V2", the REST protocol of
KServe, MLServer and Triton) and the TF-Serving/KServe V1 predict protocol.
It pools connections (httpx), retries transient failures with exponential
backoff and jitter while honouring ``Retry-After`` (tenacity), limits its
request rate (pyrate-limiter) and keeps every answer in a persistent on-disk
cache (diskcache), so that a killed or failed run resumes without asking any
row twice.
"""

import copy
import hashlib
import ipaddress
import json
import logging
import math
import os
import ssl
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from numbers import Integral, Real
from urllib.parse import quote, urlsplit

import numpy as np
from tqdm.auto import tqdm

from ._input_space import is_frame
from ._teachers import Teacher, _upgraded
from .exceptions import DB3Error, RemoteTeacherError, TeacherAnswerError

__all__ = ["RemoteTeacher"]

logger = logging.getLogger("db3learn.remote")

PROTOCOLS = ("v2", "v1")

# Open Inference Protocol tensor data types <-> numpy
_V2_DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.str_,
}
_NUMPY_TO_V2 = {(np.dtype(t).kind, np.dtype(t).itemsize): name for name, t in _V2_DATATYPES.items() if name != "BYTES"}

_QUOTE_CHARS = 300


def quote_response(text, limit=_QUOTE_CHARS):
    """``text`` quoted for an error message, cut to ``limit`` characters."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters in all)"


def v2_datatype(dtype):
    """The Open Inference Protocol datatype of a numpy ``dtype`` ("FP32", "INT64", ...)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return "BYTES"
    name = _NUMPY_TO_V2.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ValueError(
            f"Inputs of dtype {dtype} have no Open Inference Protocol datatype; cast them to float32 or float64."
        )
    return name


def decode_v2_tensor(tensor, *, where):
    """The numpy array of a V2 tensor object ``{"name", "shape", "datatype", "data"}``.

    Raises ``ValueError`` naming ``where`` when the tensor is malformed.
    """
    if not isinstance(tensor, dict) or not {"shape", "datatype", "data"} <= tensor.keys():
        raise ValueError(
            f"{where} must be an object with name, shape, datatype and data; got {quote_response(json.dumps(tensor))}."
        )
    if (tensor.get("parameters") or {}).get("binary_data_size") is not None:
        raise ValueError(
            f"{where} is sent as binary data (binary tensor data extension), which db3learn does not read; send JSON data."
        )
    datatype, shape, data = tensor["datatype"], tensor["shape"], tensor["data"]
    if datatype not in _V2_DATATYPES:
        raise ValueError(f"{where} has datatype {datatype!r}; expected one of {sorted(_V2_DATATYPES)}.")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{where} has shape {shape!r}; expected a list of non-negative integers.")
    try:
        array = np.asarray(data)
    except ValueError:  # ragged nested lists
        array = np.asarray([], dtype=object).reshape(0, 0)
    if array.dtype == object or array.dtype.kind not in "biufUS" or (array.size != math.prod(shape)):
        raise ValueError(
            f"{where} must hold {math.prod(shape):,} {datatype} values for shape {shape} "
            f"(flat or nested, row-major); got {quote_response(json.dumps(data))}."
        )
    if datatype == "BYTES":
        if array.dtype.kind not in "US":
            raise ValueError(
                f"{where} has datatype BYTES but its data are not strings: {quote_response(json.dumps(data))}."
            )
        return array.astype(str).reshape(shape)
    if array.dtype.kind in "US":
        raise ValueError(
            f"{where} has datatype {datatype} but its data are strings: {quote_response(json.dumps(data))}."
        )
    return array.astype(_V2_DATATYPES[datatype]).reshape(shape)


def frame_columns(X):
    """The columns of a DataFrame as Open Inference Protocol inputs: ``[(name, datatype, values), ...]``.

    As MLServer's and KServe's pandas codec (content type ``"pd"``) has them:
    one input per column, named by the column. Numbers and booleans keep
    their dtype's datatype (INT64, FP64, BOOL, ...; pandas' nullable dtypes
    their numpy one); strings (object, ``str`` and string dtypes) are
    ``BYTES``; a categorical column travels as its categories' type.
    ``values`` are JSON-ready Python scalars, one per row.

    Raises ``ValueError`` for column names that clash as strings, missing
    values, an object column holding something else than strings, or a
    dtype with no datatype (dates, complex numbers).
    """
    import pandas as pd

    names = [str(c) for c in X.columns]
    if len(set(names)) != len(names):
        clashing = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"The DataFrame's columns {clashing} appear more than once (as strings); each column is sent as "
            "one input named by the column, so the names must be unique."
        )
    columns = []
    for name, (_, col) in zip(names, X.items()):
        missing = col.isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"Column {name!r} has {int(missing.sum()):,} missing value{'s' if missing.sum() > 1 else ''}, which "
                "db3learn does not send to a remote teacher; fill them in (sklearn.impute.SimpleImputer) or drop "
                "those rows."
            )
        dtype = col.dtype
        if isinstance(dtype, pd.CategoricalDtype):  # sent as its categories' type: the codecs have no categories
            col = col.astype(dtype.categories.dtype)
            dtype = col.dtype
        numpy_dtype = dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is not None and numpy_dtype.kind in "biuf":
            datatype = v2_datatype(numpy_dtype)
            values = col.to_numpy(dtype=numpy_dtype).tolist()
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            values = col.tolist()
            odd = [v for v in values if not isinstance(v, str)][:3]
            if odd:
                raise ValueError(
                    f"Column {name!r} (dtype {dtype}) holds values that are not strings, such as "
                    f"{', '.join(repr(v) for v in odd)}; a column is sent as strings (BYTES) or as numbers, not "
                    "a mix. Cast it with df[col].astype(str) or to a numeric dtype."
                )
            datatype = "BYTES"
        else:
            raise ValueError(
                f"Column {name!r} has dtype {dtype}, which has no Open Inference Protocol datatype; send "
                "numbers, booleans or strings (e.g. dates as strings, df[col].astype(str), or as numbers)."
            )
        columns.append((name, datatype, values))
    return columns


def _as_labels(values, n, *, what, fix, raw):
    """One label per row from a decoded output; raise TeacherAnswerError otherwise."""
    values = np.asarray(values)
    if values.ndim == 0 or len(values) != n:
        got = "a scalar" if values.ndim == 0 else f"{len(values):,}"
        raise TeacherAnswerError(
            f"Expected one label for each of the {n:,} rows sent; {what} has {got}. The server answered "
            f"{quote_response(raw)}. Check that the endpoint returns one prediction per input row."
        )
    if values.ndim > 1:
        per_row = math.prod(values.shape[1:])
        if per_row != 1:
            raise TeacherAnswerError(
                f"Expected one label per row; {what} holds {per_row} values per row (shape "
                f"{list(values.shape)}), which look like scores or probabilities, not labels. {fix} "
                f"The server answered {quote_response(raw)}."
            )
        values = values.reshape(n)
    if values.dtype.kind == "f":
        from ._teachers import _scores_not_labels  # the words a local teacher's answer gets

        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise TeacherAnswerError(
                f"Expected class labels; {what} holds {_scores_not_labels(values[bad], values.dtype)}. {fix} "
                f"The server answered {quote_response(raw)}."
            )
        values = values.astype(np.int64)
    elif values.dtype.kind in "iu":
        values = values.astype(np.int64)
    return values


class _Codec:
    """A protocol's paths and messages for one model: ``{name}/models/{model}[/versions/{version}]...``."""

    name = None

    def __init__(self, model_name, model_version, output_name):
        self.model_name = model_name
        self.output_name = output_name
        base = f"{self.name}/models/{quote(model_name, safe='')}"
        if model_version is not None:
            base += f"/versions/{quote(str(model_version), safe='')}"
        self.paths(base)


class _V2(_Codec):
    """Open Inference Protocol (KServe/MLServer/Triton "V2") REST messages."""

    name = "v2"

    def paths(self, base):
        self.infer_path = f"{base}/infer"
        self.ready_path = f"{base}/ready"
        self.metadata_path = base

    def request(self, X, input_name, datatype):
        return self._body(
            {"inputs": [{"name": input_name, "shape": list(X.shape), "datatype": datatype, "data": X.ravel().tolist()}]}
        )

    def _body(self, body):
        """``body`` asking for the output ``output_name``, when one is named."""
        if self.output_name is not None:
            body["outputs"] = [{"name": self.output_name}]
        return body

    def frame_request(self, columns, n):
        """MLServer's and KServe's pandas codec: one input per column, ``"content_type": "pd"``."""
        inputs = []
        for name, datatype, values in columns:
            tensor = {"name": name, "shape": [n, 1], "datatype": datatype, "data": values}
            if datatype == "BYTES":  # UTF-8 strings, as MLServer's StringCodec reads them
                tensor["parameters"] = {"content_type": "str"}
            inputs.append(tensor)
        return self._body({"parameters": {"content_type": "pd"}, "inputs": inputs})

    def labels(self, answer, n, raw):
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, list) or not outputs:
            raise TeacherAnswerError(
                'Expected an Open Inference Protocol inference response, a JSON object with "outputs": '
                f"[{{name, shape, datatype, data}}, ...]; the server answered {quote_response(raw)}. "
                'Check the URL, the model name and protocol= ("v1" for TF-Serving/KServe V1 endpoints).'
            )
        names = [o.get("name") if isinstance(o, dict) else None for o in outputs]
        if self.output_name is None:
            output, which = outputs[0], f"output {names[0]!r}"
            fix = f"Pass output_name= one of {names} that holds the predicted labels."
        elif self.output_name in names:
            output, which = outputs[names.index(self.output_name)], f"output {self.output_name!r}"
            fix = f"Pass output_name= one of {names} that holds the predicted labels."
        else:
            raise TeacherAnswerError(
                f"Expected an output named {self.output_name!r}; the response has outputs {names}. Pass "
                f"output_name= one of them. The server answered {quote_response(raw)}."
            )
        try:
            values = decode_v2_tensor(output, where=which)
        except ValueError as exc:
            raise TeacherAnswerError(f"{exc} The server answered {quote_response(raw)}.") from None
        return _as_labels(values, n, what=which, fix=fix, raw=raw)


class _V1(_Codec):
    """TF-Serving / KServe V1 predict messages: ``{"instances": ...}`` -> ``{"predictions": ...}``."""

    name = "v1"

    def paths(self, base):
        self.infer_path = f"{base}:predict"
        self.ready_path = base
        self.metadata_path = None

    def request(self, X, input_name, datatype):
        return {"instances": X.tolist()}

    def frame_request(self, columns, n):
        """One object per row, ``{column: [value], ...}``: KServe's V1 form for a DataFrame.

        KServe's sklearn server makes a DataFrame of each instance and stacks
        them, so each value is a one-element list (a bare scalar would be
        refused); for TF-Serving, each named input of a row has shape [1].
        """
        return {"instances": [{name: [values[i]] for name, _, values in columns} for i in range(n)]}

    def labels(self, answer, n, raw):
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list):
            raise TeacherAnswerError(
                'Expected a V1 predict response, a JSON object with "predictions": [...]; the server '
                f"answered {quote_response(raw)}. Check the URL, the model name and protocol= "
                '("v2" for Open Inference Protocol endpoints).'
            )
        if predictions and all(isinstance(p, dict) for p in predictions):  # TF-Serving's named outputs, row format
            keys = sorted(predictions[0])
            if self.output_name is None or any(self.output_name not in p for p in predictions):
                raise TeacherAnswerError(
                    f"The predictions are objects with keys {keys}; pass output_name= the key that "
                    f"holds the predicted label. The server answered {quote_response(raw)}."
                )
            predictions = [p[self.output_name] for p in predictions]
        try:
            values = np.asarray(predictions)
        except ValueError:
            values = np.asarray([], dtype=object)
        if values.dtype == object or values.dtype.kind not in "biufUS":
            raise TeacherAnswerError(
                f"Expected one label (a number or a string) per row in the predictions; the server "
                f"answered {quote_response(raw)}."
            )
        from ._teachers import _check_one_type

        try:  # numpy makes one type of several: JSON [1, "a"] -> ["1", "a"], [true, 2] -> [1, 2]
            _check_one_type(np.asarray(predictions, dtype=object).reshape(-1), "predictions")
        except TeacherAnswerError as exc:
            raise TeacherAnswerError(f"{exc} The server answered {quote_response(raw)}.") from None
        fix = "Serve the model's predict(X), or the class of highest score, not its scores."
        return _as_labels(values, n, what="the predictions", fix=fix, raw=raw)


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, 429 or 5xx."""

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class _WaitRetryAfter:
    """tenacity wait: the server's ``Retry-After`` when it sent one, else the fallback backoff."""

    def __init__(self, fallback):
        self.fallback = fallback

    def __call__(self, retry_state):
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after
        return self.fallback(retry_state)


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Endpoint:
    """One model behind an HTTP API: builds requests, sends them with retries, reads labels.

    Thread-safe: :meth:`predict` may be called from several threads, which
    share one pooled ``httpx.Client``.
    """

    def __init__(
        self,
        base_url,
        model_name,
        *,
        protocol,
        model_version,
        input_name,
        output_name,
        timeout,
        max_retries,
        backoff,
        max_backoff,
        max_requests_per_second,
        max_concurrency,
        api_key_env,
        api_key_header,
        api_key_prefix,
        verify,
    ):
        self.base_url = base_url
        self.model_name = model_name
        self.protocol = protocol
        self.model_version = model_version
        self.input_name = input_name
        self.output_name = output_name
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_requests_per_second = max_requests_per_second
        self.max_concurrency = max_concurrency
        self.api_key_env = api_key_env
        self.api_key_header = api_key_header
        self.api_key_prefix = api_key_prefix
        self.verify = verify
        self.codec = (_V2 if protocol == "v2" else _V1)(model_name, model_version, output_name)
        self.n_requests = 0
        self.n_retries = 0
        self._init_runtime()

    # -- runtime state: never pickled, rebuilt on first use ----------------------------
    def _init_runtime(self):
        self._lock = threading.Lock()
        self._input_lock = threading.Lock()
        self._client = None
        self._limiter = None
        self._input = None  # (name, datatype or None), from the model's metadata

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_lock", "_input_lock", "_client", "_limiter", "_input"):
            state.pop(name)
        if getattr(self, "_fork_input", False):  # a fork keeps the input its parent resolved
            state["_input"] = self._input
        return state

    def __setstate__(self, state):
        known_input = state.pop("_input", None)
        self.__dict__.update(_upgraded(state))
        self._init_runtime()
        self._input = known_input

    def fork(self, n_shares):
        """A copy for one of ``n_shares`` workers: its share of the request rate and concurrency.

        The copy has its own connections, rate limiter and counters (at 0);
        it keeps the input name and datatype already resolved, so it sends
        no metadata request of its own.
        """
        new = copy.copy(self)
        new._init_runtime()
        new._input = self._input
        new._fork_input = True
        new.n_requests = new.n_retries = 0
        if self.max_requests_per_second is not None:
            new.max_requests_per_second = self.max_requests_per_second / n_shares
        new.max_concurrency = max(1, self.max_concurrency // n_shares)
        return new

    def close(self):
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _api_key(self):
        """The API key from ``api_key_env``, checked; None without one. Errors never quote it."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RemoteTeacherError(
                f"The environment variable {self.api_key_env} (api_key_env) is not set or empty; it must hold "
                f"the API key for {self.base_url}. Export it before running, e.g. `export {self.api_key_env}=...`."
            )
        value = f"{self.api_key_prefix}{key}"
        if key != key.strip() or not value.isprintable() or not value.isascii():
            what = (
                "leading or trailing whitespace (a trailing newline?)"
                if key != key.strip()
                else "characters that cannot go in an HTTP header (control or non-ASCII characters)"
            )
            raise RemoteTeacherError(
                f"The API key in the environment variable {self.api_key_env} (api_key_env) holds {what}, so it "
                f"cannot be sent in the {self.api_key_header} header. Set it to the key alone, e.g. "
                f"`export {self.api_key_env}=\"$(tr -d '[:space:]' < keyfile)\"`."
            )
        return key

    def _scrub(self, text):
        """``text`` (a server's answer, to be quoted in an error) with the API key blotted out."""
        text = str(text)
        key = os.environ.get(self.api_key_env) if self.api_key_env is not None else None
        for secret in sorted({key, key.strip()}, key=len, reverse=True) if key else ():
            if secret:
                text = text.replace(secret, "[api key]")
        return text

    def _headers(self):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key is None:
            return headers
        parts = urlsplit(self.base_url)
        if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
            raise RemoteTeacherError(
                f"Refusing to send the API key from {self.api_key_env} over plain HTTP to {parts.hostname}; "
                "use an https:// base_url."
            )
        headers[self.api_key_header] = f"{self.api_key_prefix}{key}"
        return headers

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import httpx

                if isinstance(self.verify, (str, os.PathLike)):
                    verify = ssl.create_default_context(cafile=os.fspath(self.verify))
                else:
                    verify = self.verify
                self._client = httpx.Client(
                    base_url=self.base_url,
                    headers=self._headers(),
                    timeout=httpx.Timeout(self.timeout),
                    limits=httpx.Limits(
                        max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
                    ),
                    verify=verify,
                    follow_redirects=False,
                )
            if self._limiter is None and self.max_requests_per_second is not None:
                from pyrate_limiter import Limiter, Rate

                interval_ms = max(1, round(1000 / self.max_requests_per_second))
                self._limiter = Limiter(Rate(1, interval_ms))
            return self._client

    # -- one HTTP exchange, with retries ----------------------------------------------
    def _send(self, method, path, body=None):
        """The response to one request, after retrying transient failures; raises RemoteTeacherError."""
        import httpx
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

        client = self._get_client()
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        url = f"{self.base_url.rstrip('/')}/{path}"
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=_WaitRetryAfter(
                wait_exponential(multiplier=self.backoff, max=self.max_backoff) + wait_random(0, self.backoff)
            ),
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        start = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    if self._limiter is not None:
                        self._limiter.try_acquire("db3learn-remote", blocking=True)
                    with self._lock:
                        self.n_requests += 1
                    try:
                        response = client.request(method, path, content=content)
                    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                        raise _Transient(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
                    except httpx.HTTPError as exc:
                        raise RemoteTeacherError(
                            f"{method} {url} failed: {type(exc).__name__}: {exc}. Check base_url."
                        ) from exc
                    self._check_status(response, method, url)
                    return response
        except _Transient as exc:
            raise RemoteTeacherError(
                f"{method} {url} failed {self.max_retries + 1} times over {time.monotonic() - start:.1f} s; the last "
                f"failure: {exc}. Is the server up and reachable? Every answer received so far is cached: "
                "call again (or rerun) to resume, or raise max_retries or timeout."
            ) from exc

    def _before_sleep(self, retry_state):
        with self._lock:
            self.n_retries += 1
        logger.info(
            "%s %s: %s; retry %d of %d in %.2f s",
            self.model_name,
            self.protocol,
            retry_state.outcome.exception(),
            retry_state.attempt_number,
            self.max_retries,
            retry_state.upcoming_sleep,
        )

    def _check_status(self, response, method, url):
        status = response.status_code
        if status < 400:
            return
        text = self._scrub(response.text)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.max_backoff:
                raise RemoteTeacherError(
                    f"{method} {url} answered HTTP {status} and asks to wait {retry_after:.0f} s before "
                    f"retrying (Retry-After), more than max_backoff={self.max_backoff:g} s. Every answer "
                    "received so far is cached: rerun later, or raise max_backoff."
                )
            raise _Transient(f"HTTP {status} {quote_response(text, 120)}", retry_after=retry_after)
        hint = {
            400: "The server rejected the request: check input_name, the data's shape and dtype, and protocol=.",
            401: f"Check the API key in {self.api_key_env} and api_key_header=."
            if self.api_key_env
            else "The server wants credentials: pass api_key_env= the name of the environment variable that holds the API key.",
            403: "The credentials were refused: check the API key and its permissions.",
            404: f"Check base_url, model_name={self.model_name!r}, model_version and protocol={self.protocol!r}.",
        }.get(status, "Check the request against the server's documentation.")
        raise RemoteTeacherError(f"{method} {url} answered HTTP {status}: {quote_response(text)}. {hint}")

    # -- the teacher's queries ------------------------------------------------------
    def _resolve_input(self):
        """Input tensor name and datatype: given, else from the model's V2 metadata, else "input-0"."""
        with self._input_lock:  # one metadata request, whatever the number of threads
            if self._input is None:
                name, datatype = self.input_name, None
                if self.protocol == "v2" and name is None:
                    name = "input-0"
                    try:
                        meta = self._send("GET", self.codec.metadata_path).json()
                        inputs = meta.get("inputs") if isinstance(meta, dict) else None
                        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict):
                            name = inputs[0].get("name") or name
                            if inputs[0].get("datatype") in _V2_DATATYPES and inputs[0]["datatype"] != "BYTES":
                                datatype = inputs[0]["datatype"]
                    except (RemoteTeacherError, ValueError):  # metadata is optional for us: fall back to defaults
                        pass
                self._input = (name, datatype)
            return self._input

    def predict(self, X):
        if is_frame(X):  # a table: one input per column (pandas codec), named by the columns
            body = self.codec.frame_request(frame_columns(X), len(X))
        else:
            X = np.asarray(X)
            name, datatype = self._resolve_input()
            if datatype is not None:
                X = X.astype(_V2_DATATYPES[datatype], copy=False)
            else:
                datatype = v2_datatype(X.dtype)
            body = self.codec.request(X, name, datatype)
        response = self._send("POST", self.codec.infer_path, body)
        raw = self._scrub(response.text)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise TeacherAnswerError(
                f"Expected a JSON response from {self.base_url}; the server answered (HTTP {response.status_code}) "
                f"{quote_response(raw)}."
            ) from None
        return self.codec.labels(answer, len(X), raw)

    def ready(self):
        self._get_client()  # a missing or malformed API key is an error, not "not ready"
        try:
            response = self._send("GET", self.codec.ready_path)
        except RemoteTeacherError as exc:
            if isinstance(exc.__cause__, _Transient):
                raise
            return False
        if self.protocol == "v1":
            try:
                return bool(response.json().get("ready", False))
            except (ValueError, AttributeError):
                return False
        return True


class _DiskAnswers:
    """Answers on disk (diskcache), keyed by model identity and row digest, and the budget's ledger.

    Labels are stored as JSON text (which keeps ints, floats, strings and
    booleans apart) and the cache refuses to unpickle anything it finds.
    The budget's ledger counts the rows of this model answered through the
    directory, by every process and run that shares it (incremented in the
    transaction that writes the answers), plus the rows that live processes
    have reserved for the calls they are making (a lease per process and
    thread, dropped when the call ends or its process is gone). It is
    updated in SQLite transactions, so that processes sharing the directory
    reserve rows of one budget without overspending it, and a run killed
    outright leaves only what it was answered counted.
    """

    def __init__(self, directory, identity):
        self.directory = os.fspath(directory)
        self.prefix = hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
        self._cache = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"directory": self.directory, "prefix": self.prefix}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = None
        self._lock = threading.Lock()

    def _open(self):
        with self._lock:  # worker threads may be first to write
            if self._cache is None:
                from diskcache import Cache

                self._cache = Cache(self.directory, disk=_no_pickle_disk(), eviction_policy="none")
            return self._cache

    def get_many(self, keys):
        cache = self._open()
        with cache.transact():
            found = [cache.get(self.prefix + k.hex()) for k in keys]
        return [None if v is None else json.loads(v) for v in found]

    def set_many(self, keys, labels, lease=None):
        """Store the answers, count them as answered and take them off ``lease`` (default: this thread's).

        One transaction: a process reserving rows meanwhile never sees them twice (answered and still
        leased), which would leave part of the budget unspent.
        """
        cache = self._open()
        lease = lease or self._lease()
        with cache.transact():
            for k, label in zip(keys, np.asarray(labels).tolist()):
                cache.set(self.prefix + k.hex(), json.dumps(label))
            cache.set(self._answered_key, int(cache.get(self._answered_key, 0)) + len(keys))
            self._change_lease(cache, lease, lambda held: held - len(keys))

    # -- the budget's ledger ------------------------------------------------------------
    @property
    def _answered_key(self):
        return f"{self.prefix}:answered"

    @property
    def _leases_key(self):
        return f"{self.prefix}:leases"

    @staticmethod
    def _lease():
        return f"{os.getpid()}:{threading.get_ident()}"

    def _live_leases(self, cache):
        """The leases (rows reserved per process and thread) of processes still alive."""
        leases = json.loads(cache.get(self._leases_key, "{}"))
        return {k: n for k, n in leases.items() if _pid_alive(int(k.split(":")[0]))}

    def spent(self):
        """Rows answered through this directory, over every process and run, plus the rows reserved now."""
        cache = self._open()
        with cache.transact():
            return int(cache.get(self._answered_key, 0)) + sum(self._live_leases(cache).values())

    def reserve(self, n, limit):
        """Reserve up to ``n`` rows for this thread's call, at most ``limit`` in all (None: no limit); return how many."""
        cache = self._open()
        with cache.transact():
            leases = self._live_leases(cache)
            spent = int(cache.get(self._answered_key, 0)) + sum(leases.values())
            allowed = n if limit is None else max(0, min(n, limit - spent))
            if allowed:
                leases[self._lease()] = leases.get(self._lease(), 0) + allowed
            cache.set(self._leases_key, json.dumps(leases))
        return allowed

    def release(self):
        """This thread's call is over: what is left of its lease goes back to the budget."""
        cache = self._open()
        with cache.transact():
            self._change_lease(cache, self._lease(), lambda held: 0)

    def _change_lease(self, cache, lease, change):
        """Set ``lease`` to ``change(rows it holds)`` (dropped at 0), inside the caller's transaction."""
        leases = json.loads(cache.get(self._leases_key, "{}"))
        held = change(leases.pop(lease, 0))
        if held > 0:
            leases[lease] = held
        cache.set(self._leases_key, json.dumps(leases))

    def close(self):
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None


def _pid_alive(pid):
    """Whether process ``pid`` (of this machine) is running; assumed so where that cannot be told."""
    if pid == os.getpid() or os.name == "nt":  # on Windows, os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's
        return True
    return True


def _no_pickle_disk():
    """A diskcache ``Disk`` that never unpickles what it reads."""
    from diskcache.core import MODE_PICKLE, Disk

    class NoPickleDisk(Disk):
        def fetch(self, mode, filename, value, read):
            if mode == MODE_PICKLE:
                raise TeacherAnswerError(
                    "The answer cache holds a pickled value, which db3learn never writes and will not load; "
                    "the cache directory was written by something else. Use an empty cache_dir."
                )
            return super().fetch(mode, filename, value, read)

    return NoPickleDisk


class RemoteTeacher(Teacher):
    """A model served over HTTP as a label-only teacher.

    Speaks the Open Inference Protocol (``protocol="v2"``, the REST protocol
    of KServe, MLServer and Triton: ``POST v2/models/{name}/infer``, labels
    read from the first output or from ``output_name``) and the
    TF-Serving/KServe V1 protocol (``protocol="v1"``:
    ``POST v1/models/{name}:predict``, ``{"instances": ...}`` ->
    ``{"predictions": ...}``). Like every :class:`~db3learn.Teacher` it
    counts queries, enforces ``max_queries``, caches answers per row and is
    shared, not copied, by ``sklearn.base.clone``.

    Rows go as one tensor of shape ``(n_rows, ...)`` (V2) or a list of rows
    (V1). A pandas DataFrame, the rows :class:`~db3learn.DB3Distiller` asks
    when it was fitted on one, goes as MLServer's and KServe's pandas codec
    sends it (content type ``"pd"``): one input per column, named by the
    column, of shape ``[n_rows, 1]``, with its dtype's datatype (``INT64``,
    ``FP64``, ``BOOL``, ...; ``BYTES`` with UTF-8 strings for string,
    object and categorical columns); in V1, one object per row,
    ``{column: [value], ...}``, as KServe's scikit-learn server reads
    DataFrames. So a ``Pipeline`` fitted on a DataFrame with string columns,
    served by ``db3learn serve``, MLServer or KServe, is a teacher as it is.

    Requests carry ``batch_size`` rows each; up to ``max_concurrency`` are
    in flight at once over one pool of connections. Connection errors,
    timeouts, HTTP 429 and 5xx are retried up to ``max_retries`` times with
    exponential backoff and jitter, waiting what the server's ``Retry-After``
    asks for when it sends one. With ``cache_dir``, every answer is written
    to disk as soon as it arrives, keyed by the model's identity and the
    row's bytes: a run that was killed, ran out of budget or lost the
    server resumes without asking any row twice (a run killed outright
    asks again at most the rows in flight: ``max_concurrency * batch_size``).

    Parameters
    ----------
    base_url : str
        Where the server answers, e.g. ``"http://127.0.0.1:8080"`` or
        ``"https://host/prefix"``; the protocol's paths are appended.
        TLS certificates are always verified.
    model_name : str
        The model's name in the URL paths.
    protocol : {"v2", "v1"}, default="v2"
        ``"v2"``: Open Inference Protocol REST. ``"v1"``: TF-Serving/KServe V1.
    model_version : str or None, default=None
        Adds ``/versions/{model_version}`` to the paths; ``None`` lets the
        server choose.
    input_name : str or None, default=None
        V2 only: the input tensor's name. ``None`` takes it (and its
        datatype, to which rows are cast) from the model's metadata
        (``GET v2/models/{name}``) when that lists one input, else
        ``"input-0"``. Not used for a DataFrame, whose inputs are named by
        its columns.
    output_name : str or None, default=None
        V2: the output tensor that holds the labels (requested by name);
        ``None`` reads the first output. V1: the key of each prediction when
        predictions are objects.
    batch_size : int, default=1024
        Rows per request.
    max_concurrency : int, default=4
        Requests in flight at once (and pooled connections).
    timeout : float, default=30.0
        Seconds to wait for a connection, a write or a read, per request.
    max_retries : int, default=5
        Retries of one request after a transient failure (so at most
        ``max_retries + 1`` attempts).
    backoff : float, default=0.5
        Seconds: the wait before retry ``k`` is ``backoff * 2**(k-1)``, at
        most ``max_backoff``, plus a random jitter up to ``backoff``; a
        ``Retry-After`` header replaces it.
    max_backoff : float, default=30.0
        Longest wait, in seconds. A ``Retry-After`` longer than this is an
        error rather than a silent long sleep.
    max_requests_per_second : float or None, default=None
        Request rate limit (retries included), evenly spaced. ``None``: no
        limit.
    cache_dir : str, path or None, default=None
        Directory of the persistent answer cache (created if needed). Rows
        already answered there, by this process or an earlier one, cost
        nothing. It also keeps the ledger of the rows this model answered
        through it, against which ``max_queries`` is checked: the budget
        holds across the processes and reruns that share the directory
        (raise ``max_queries`` to spend more). A run killed with
        ``kill -9`` may ask again the rows of the requests it had in flight,
        at most ``max_concurrency * batch_size`` rows per kill; they are
        counted once more. ``None``: answers are cached in memory only, and
        the budget is this object's.
    cache_key : str or None, default=None
        The model's identity in ``cache_dir``. ``None`` derives it from
        ``protocol``, ``base_url``, ``model_name``, ``model_version``,
        ``input_name`` and ``output_name``; set it when the same model moves
        to another URL.
    api_key_env : str or None, default=None
        Name of the environment variable that holds the API key, read when
        the first request is sent. The key is sent in the
        ``api_key_header`` header and never logged, shown in ``repr`` or
        put in an error message. It is never sent over plain HTTP except to
        a loopback address.
    api_key_header : str, default="Authorization"
        Header that carries the key.
    api_key_prefix : str, default="Bearer "
        Put before the key in the header (``""`` for e.g. ``X-API-Key``).
    verify : True or str, default=True
        TLS verification: ``True`` uses the system's certificates; a path
        uses that CA bundle. It cannot be turned off.
    max_queries, cache, classes, keep_rows
        As in :class:`~db3learn.Teacher`.
    verbose : int, default=0
        ``> 0`` shows a progress bar of the rows asked when a call sends
        several requests.

    Attributes
    ----------
    n_queries : int
        Rows the server answered through this object (a request that is
        retried counts once; the rows of a request that failed for good do
        not count, though the server may have processed them:
        ``n_requests`` counts every request sent).
    n_cache_hits : int
        Rows answered from the cache, in memory or on disk.
    n_requests : int
        HTTP requests sent, retries and metadata requests included.
    n_retries : int
        Retries after transient failures.

    Raises
    ------
    RemoteTeacherError
        From :meth:`predict`: the server could not be reached or kept
        failing after the retries, or refused the request (HTTP 4xx other
        than 429). The message quotes the response.
    TeacherAnswerError
        From :meth:`predict`: the response is not one label per row (wrong
        length, scores instead of labels, not JSON).
    QueryBudgetExceeded
        As for any :class:`~db3learn.Teacher`.

    See Also
    --------
    Teacher : the wrapper this extends.
    db3learn.serve.create_app : a label-only V2/V1 endpoint for a saved model.

    Examples
    --------
    >>> from db3learn import RemoteTeacher
    >>> teacher = RemoteTeacher("http://127.0.0.1:8080", "digits-svc", max_queries=100_000)
    >>> teacher
    RemoteTeacher('http://127.0.0.1:8080', 'digits-svc', protocol='v2', n_queries=0, max_queries=100000)
    """

    _passthrough_errors = (DB3Error,)

    def __init__(
        self,
        base_url,
        model_name,
        *,
        protocol="v2",
        model_version=None,
        input_name=None,
        output_name=None,
        batch_size=1024,
        max_concurrency=4,
        timeout=30.0,
        max_retries=5,
        backoff=0.5,
        max_backoff=30.0,
        max_requests_per_second=None,
        cache_dir=None,
        cache_key=None,
        api_key_env=None,
        api_key_header="Authorization",
        api_key_prefix="Bearer ",
        verify=True,
        max_queries=None,
        cache=True,
        classes=None,
        keep_rows=False,
        verbose=0,
    ):
        _require("httpx", "tenacity", "pyrate_limiter", "diskcache")
        _check_remote_params(
            base_url=base_url,
            model_name=model_name,
            protocol=protocol,
            max_concurrency=max_concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            max_requests_per_second=max_requests_per_second,
            verify=verify,
        )
        endpoint = _Endpoint(
            base_url,
            model_name,
            protocol=protocol,
            model_version=model_version,
            input_name=input_name,
            output_name=output_name,
            timeout=float(timeout),
            max_retries=int(max_retries),
            backoff=float(backoff),
            max_backoff=float(max_backoff),
            max_requests_per_second=max_requests_per_second,
            max_concurrency=int(max_concurrency),
            api_key_env=api_key_env,
            api_key_header=api_key_header,
            api_key_prefix=api_key_prefix,
            verify=verify,
        )
        super().__init__(
            endpoint, batch_size=batch_size, max_queries=max_queries, cache=cache, classes=classes, keep_rows=keep_rows
        )
        self.cache_dir = cache_dir
        self.cache_key = cache_key
        self.verbose = verbose
        if cache_dir is not None and cache:
            self._store = _DiskAnswers(cache_dir, self.identity)

    # -- connection settings, fixed at construction ----------------------------------
    base_url = property(lambda self: self.model.base_url)
    model_name = property(lambda self: self.model.model_name)
    protocol = property(lambda self: self.model.protocol)
    model_version = property(lambda self: self.model.model_version)
    input_name = property(lambda self: self.model.input_name)
    output_name = property(lambda self: self.model.output_name)
    max_concurrency = property(lambda self: self.model.max_concurrency)
    timeout = property(lambda self: self.model.timeout)
    max_retries = property(lambda self: self.model.max_retries)
    api_key_env = property(lambda self: self.model.api_key_env)
    n_requests = property(lambda self: self.model.n_requests, doc="HTTP requests sent, retries included.")
    n_retries = property(lambda self: self.model.n_retries, doc="Retries after transient failures.")

    @property
    def identity(self):
        """The model's identity in the persistent cache (``cache_key``, or one derived from the endpoint)."""
        if self.cache_key is not None:
            return str(self.cache_key)
        return json.dumps(
            [
                self.protocol,
                self.base_url.rstrip("/"),
                self.model_name,
                self.model_version,
                self.input_name,
                self.output_name,
            ]
        )

    def __repr__(self):
        budget = "" if self.max_queries is None else f", max_queries={self.max_queries}"
        return (
            f"{type(self).__name__}({self.base_url!r}, {self.model_name!r}, protocol={self.protocol!r}, "
            f"n_queries={self.n_queries}{budget})"
        )

    def _model_classes(self):
        return None

    def predict(self, X):
        """The server's label for each row of ``X``, asking it only for uncached rows.

        Parameters
        ----------
        X : array-like of shape (n_rows, ...) or pandas DataFrame
            Rows in the form the served model expects. An array is sent as
            one input tensor (V2) or a list of rows (V1). A DataFrame is sent
            with the pandas codec: V2, one input per column, named by the
            column, of shape ``[n_rows, 1]``, with the request parameter
            ``"content_type": "pd"`` (string, object and categorical columns
            as ``BYTES``, UTF-8 strings, with ``"content_type": "str"``); V1,
            one object per row, ``{column: [value], ...}``. Rows are cached
            by their values, columns and dtypes.

        Returns
        -------
        labels : ndarray of shape (n_rows,)
            The label of each row, as the server answered it (integers as
            ``int64``, strings as ``str``).

        Raises
        ------
        RemoteTeacherError, TeacherAnswerError, QueryBudgetExceeded
            See the class docstring.
        TeacherError
            When the rows cannot be sent: a dtype with no Open Inference
            Protocol datatype, or a DataFrame with missing values, with an
            object column holding something else than strings, or with
            column names that clash as strings.
        """
        return super().predict(X)

    def ready(self):
        """Whether the server says the model is ready (V2 ``GET .../ready``, V1 ``GET v1/models/{name}``).

        Returns
        -------
        ready : bool

        Raises
        ------
        RemoteTeacherError
            When the server cannot be reached after the retries.
        """
        return self.model.ready()

    def close(self):
        """Close the pooled connections and the disk cache (reopened on next use)."""
        self.model.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- answering in joblib workers (n_jobs): a share of the rate each -----------------
    def _fork(self, n_shares):
        self.model._resolve_input()  # once here, not once per worker
        fork = super()._fork(n_shares)
        fork.model = self.model.fork(n_shares)
        return fork

    def _fork_state(self):
        return {"n_requests": self.model.n_requests, "n_retries": self.model.n_retries}

    def _merge_fork_state(self, state):
        with self.model._lock:
            self.model.n_requests += state["n_requests"]
            self.model.n_retries += state["n_retries"]

    def _close_fork(self):
        self.model.close()

    # -- concurrent batches, exact budget -----------------------------------------------
    def _ask_batches(self, X, batches, keys, codes, n_before=0):
        """Send up to ``max_concurrency`` batches at once; file each answer as it arrives.

        Only the batches planned by :meth:`Teacher._ask` (those that fit the
        budget) are sent. When one fails for good, no new batch is sent, the
        ones in flight are awaited and kept, and the error is raised.
        """
        n_rows = sum(len(idx) for idx in batches)
        bar = tqdm(
            total=n_rows,
            desc=f"asking {self.model_name}",
            unit="row",
            leave=False,
            disable=not self.verbose or len(batches) < 2,
        )
        try:
            if self.max_concurrency == 1 or len(batches) < 2:
                for idx in batches:
                    self._record(idx, self._fetch(X, idx, keys, n_before + bar.n), keys, codes)
                    bar.update(len(idx))
                return
            todo = iter(batches)
            pending = {}
            error = None
            with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="db3learn-remote") as pool:
                lease = _DiskAnswers._lease()  # the budget's rows were reserved by this thread, not the workers

                def submit():
                    idx = next(todo, None)
                    if idx is not None:
                        pending[pool.submit(self._fetch, X, idx, keys, n_before + bar.n, lease)] = idx

                for _ in range(self.max_concurrency):
                    submit()
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        idx = pending.pop(future)
                        try:
                            answer = future.result()
                        except BaseException as exc:  # keep the answers in flight, then raise the first error
                            error = error or exc
                            continue
                        self._record(idx, answer, keys, codes)
                        bar.update(len(idx))
                        if error is None:
                            submit()
            if error is not None:
                raise error
        finally:
            bar.close()


def _require(*modules):
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"RemoteTeacher needs {missing}: install db3learn with its remote extra, pip install 'db3learn[remote]'."
        )


def _without_credentials(url):
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _check_remote_params(
    *,
    base_url,
    model_name,
    protocol,
    max_concurrency,
    timeout,
    max_retries,
    backoff,
    max_backoff,
    max_requests_per_second,
    verify,
):
    if not isinstance(base_url, str):
        raise ValueError(
            f"base_url must be an http:// or https:// URL such as 'http://127.0.0.1:8080'; got a {type(base_url).__name__}."
        )
    try:
        parts = urlsplit(base_url)
        has_credentials = "@" in parts.netloc
    except ValueError:
        parts, has_credentials = None, False
    if has_credentials:
        raise ValueError(
            f"base_url holds credentials (user:password@ before the host: {_without_credentials(base_url)!r}). "
            "db3learn refuses them: a URL ends up in reprs, logs, pickles and reports, and would send them "
            "as Basic auth even over plain HTTP. Put the key in an environment variable and pass its name "
            "as api_key_env= (with api_key_header= and api_key_prefix= for the server's scheme)."
        )
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"base_url must be an http:// or https:// URL such as 'http://127.0.0.1:8080'; got {base_url!r}."
        )
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(
            f"model_name must be a non-empty string (the model's name in the URL paths); got {model_name!r}."
        )
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"protocol must be 'v2' (Open Inference Protocol) or 'v1' (TF-Serving/KServe V1); got {protocol!r}."
        )
    for name, value, low in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    for name, value in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff)):
        if not isinstance(value, Real) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive number of seconds; got {value!r}.")
    if max_requests_per_second is not None and (
        not isinstance(max_requests_per_second, Real)
        or not max_requests_per_second > 0
        or not math.isfinite(max_requests_per_second)
    ):
        raise ValueError(f"max_requests_per_second must be a positive number or None; got {max_requests_per_second!r}.")
    if verify is not True and not isinstance(verify, (str, os.PathLike)):
        raise ValueError(
            f"verify must be True or the path of a CA bundle; got {verify!r}. TLS verification cannot be turned "
            "off: to reach a server with a private certificate, pass its CA bundle."
        )
