"""Credentials never reach a repr, an error, a log, a pickle or a report (issue 17, items 1-2).

Each test talks to a real HTTP server on 127.0.0.1 (a FastAPI app that
answers what the test sets and records what it received).
"""

import json
import logging
import pickle

import numpy as np
import pytest

from db3learn import RemoteTeacher
from db3learn.cli import main
from db3learn.exceptions import RemoteTeacherError, TeacherAnswerError

from .servers import v2_output

SECRET = "sk-SECRET-0123456789abcdef"


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@127.0.0.1:9",
        f"https://{SECRET}@models.example.com/prefix",
        f"http://:{SECRET}@[::1]:8080",
    ],
)
def test_credentials_in_the_url_are_refused_without_repeating_them(url, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match=r"base_url holds credentials.*api_key_env=") as info:
        RemoteTeacher(url, "m")
    assert "***@" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value) and SECRET not in caplog.text


def test_the_cli_refuses_credentials_in_the_url_without_printing_them(tmp_path, capsys):
    data = tmp_path / "X.npy"
    np.save(data, np.zeros((4, 3)))
    code = main(
        [
            "distill",
            "--teacher",
            f"http://user:{SECRET}@127.0.0.1:9/v2/models/m",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "base_url holds credentials" in err
    assert SECRET not in out + err
    assert (
        not (tmp_path / "out" / "report.json").exists() or SECRET not in (tmp_path / "out" / "report.json").read_text()
    )


@pytest.mark.parametrize(
    "bad_key, what",
    [
        (SECRET + "\n", "trailing whitespace"),
        (" " + SECRET, "leading or trailing"),
        (SECRET[:5] + "\x1b" + SECRET[5:], "control or non-ASCII"),
        (SECRET + "é", "control or non-ASCII"),
    ],
)
def test_a_malformed_api_key_is_a_clear_error_that_never_holds_it(misbehaving, monkeypatch, bad_key, what):
    monkeypatch.setenv("DB3LEARN_TEST_KEY", bad_key)
    misbehaving.reply = (200, v2_output([1], [1]), {})
    teacher = RemoteTeacher(misbehaving.url, "m", input_name="x", api_key_env="DB3LEARN_TEST_KEY", max_retries=0)
    with pytest.raises(RemoteTeacherError, match=f"DB3LEARN_TEST_KEY.*{what}") as info:
        teacher.predict(np.zeros((1, 2)))
    with pytest.raises(RemoteTeacherError, match="DB3LEARN_TEST_KEY") as ready:
        teacher.ready()  # an error, not "the model is not ready"
    for exc in (info.value, ready.value):
        assert SECRET[5:] not in str(exc) and SECRET[:5] + "\x1b" not in repr(exc)
    assert misbehaving.seen == []  # nothing was sent


@pytest.mark.parametrize("status", [400, 401, 200])
def test_a_server_that_echoes_the_key_is_quoted_with_the_key_blotted_out(misbehaving, monkeypatch, caplog, status):
    monkeypatch.setenv("DB3LEARN_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)

    def echo(body):  # the headers it got, in an error body (or in a malformed 200 answer)
        return status, json.dumps({"error": "bad request", "headers": misbehaving.seen[-1][2]}), {}

    misbehaving.reply = echo
    teacher = RemoteTeacher(misbehaving.url, "m", input_name="x", api_key_env="DB3LEARN_TEST_KEY", max_retries=0)
    with pytest.raises((RemoteTeacherError, TeacherAnswerError)) as info:
        teacher.predict(np.zeros((1, 2)))
    assert misbehaving.seen[-1][2]["authorization"] == f"Bearer {SECRET}"  # it was sent, and echoed
    assert "[api key]" in str(info.value)
    for text in (str(info.value), repr(info.value), caplog.text, pickle.dumps(teacher).decode("latin-1")):
        assert SECRET not in text
