"""Real servers on 127.0.0.1 for the remote-teacher tests: in a thread, or in a subprocess we can kill."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def thread_server(app, port=None):
    """Serve the ASGI ``app`` on 127.0.0.1 in a thread; yield its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll ``predicate`` until it is true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ServeProcess:
    """``db3learn serve`` in a subprocess on 127.0.0.1."""

    def __init__(self, model, port, *args, log=None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log or os.devnull, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "db3learn.cli",
                "serve",
                str(model),
                "--port",
                str(port),
                "--quiet",
                *map(str, args),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 60, "db3learn serve to be ready", interval=0.1)

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"db3learn serve exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stats(self):
        return httpx.get(f"{self.url}/db3learn/stats", timeout=5).json()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=20)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def read_ledger(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


class Misbehaving:
    """A FastAPI app that answers every request with the reply set by the test, and records requests."""

    def __init__(self):
        self.app = FastAPI()
        self.reply = (200, "{}", {})
        self.seen = []

        @self.app.api_route("/{path:path}", methods=["GET", "POST"])
        async def anything(path: str, request: Request):
            body = await request.body()
            self.seen.append((request.method, path, dict(request.headers), body))
            status, text, headers = (
                self.reply(json.loads(body) if body else None) if callable(self.reply) else self.reply
            )
            return Response(text, status_code=status, headers=headers, media_type="application/json")


def v2_output(data, shape, datatype="INT64", name="label"):
    return json.dumps(
        {"model_name": "m", "outputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    )
