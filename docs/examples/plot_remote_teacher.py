"""
Distill a model behind an HTTP API
==================================

The teacher is often a model you can only reach over the network. Here we play both sides on
this machine: save a scikit-learn model with skops, serve it with ``db3learn serve`` as a
label-only Open Inference Protocol (V2) endpoint on 127.0.0.1, started as a subprocess on a
free port, and distill it through HTTP with :class:`~db3learn.RemoteTeacher`. The server is
shut down at the end.
"""

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import skops.io
import torch
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from db3learn import DB3Distiller, RemoteTeacher

torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0
workdir = Path(tempfile.mkdtemp())
model_path = workdir / "digits-svc.skops"
skops.io.dump(SVC().fit(X[:1000], y[:1000]), model_path)

# %%
# Start the server
# ----------------
# ``db3learn serve`` loads the skops file (no pickle) and answers with labels only. We pick a
# free port and poll the Open Inference Protocol readiness route until the model is ready.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
url = f"http://127.0.0.1:{port}"
server = subprocess.Popen(
    [sys.executable, "-m", "db3learn.cli", "serve", str(model_path), "--port", str(port), "--quiet"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
deadline = time.monotonic() + 60
while True:
    if server.poll() is not None:
        raise RuntimeError(f"db3learn serve exited with status {server.returncode}")
    try:
        if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
            break
    except httpx.TransportError:  # not listening yet
        pass
    if time.monotonic() > deadline:
        server.kill()
        raise RuntimeError("db3learn serve did not become ready within 60 s")
    time.sleep(0.2)
print(f"serving digits-svc on {url}")

# %%
# Distill through HTTP
# --------------------
# The remote teacher batches rows per request (1,024 by default), retries transient failures,
# counts queries against ``max_queries`` and caches every answer. Once distilled, the student
# needs no teacher any more. Whatever happens, the ``finally`` clause shuts the server down.
teacher = RemoteTeacher(url, "digits-svc", max_queries=500_000)
try:
    student = DB3Distiller(teacher, random_state=0).fit(X[1000:1300])
    print(f"fidelity on held-out digits: {student.score(X[1300:]):.3f}")
    print(f"queries {teacher.n_queries:,}, HTTP requests {teacher.n_requests}, retries {teacher.n_retries}")
    print("student's labels of 10 digits:", student.predict(X[1300:1310]))
finally:
    teacher.close()
    server.terminate()
    server.wait(timeout=30)
    print("server stopped")
