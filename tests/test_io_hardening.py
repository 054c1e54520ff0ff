"""Malformed model files: one clear line naming the file, and nothing in them run."""

import json
import os
import pickle
import shutil
import zipfile

import joblib
import numpy as np
import pytest
import skops.io
import torch
from sklearn.linear_model import LogisticRegression

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler
from db3learn.cli import main
from db3learn.io import load_model, load_student, save_student

REDO = "Save the student again with db3learn.io.save_student or `db3learn distill`."


class Payload:
    """Unpickling this makes the directory ``marker``: proof that a file's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def skops_bytes(digits, tmp_path_factory):
    """A real classifier's .skops file, as bytes."""
    path = tmp_path_factory.mktemp("models") / "logreg.skops"
    skops.io.dump(LogisticRegression(max_iter=200).fit(digits[0][:300], digits[1][:300]), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def student_dir(digits, svc, tmp_path_factory):
    distiller = DB3Distiller(
        svc,
        soft_labeler=DecisionBoundarySoftLabeler(method="sd"),
        max_epochs=3,
        random_state=0,
        student__hidden_units=(16,),
    ).fit(digits[0][:100])
    return save_student(distiller, tmp_path_factory.mktemp("students") / "student")


@pytest.fixture
def student(student_dir, tmp_path):
    """A fresh copy of the saved student, to damage."""
    return shutil.copytree(student_dir, tmp_path / "student")


def refused(load, path):
    """The ValueError ``load(path)`` raises; checks it is one line."""
    with pytest.raises(ValueError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_payload_runs_when_unpickled(tmp_path):  # so that "not run" below means something
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    torch.save({"w": Payload(tmp_path / "ran-torch")}, tmp_path / "w.pt")
    torch.load(tmp_path / "w.pt", weights_only=False)
    assert (tmp_path / "ran").is_dir() and (tmp_path / "ran-torch").is_dir()


@pytest.mark.parametrize(
    ("dump", "what"),
    [
        (lambda obj, path: path.write_bytes(pickle.dumps(obj)), "a pickle"),
        (lambda obj, path: joblib.dump(obj, path, compress=3), "no zip archive"),
    ],
    ids=["pickle", "joblib-zlib"],
)
def test_pickle_named_skops_is_refused_and_not_run(tmp_path, capsys, dump, what):
    path, marker = tmp_path / "model.skops", tmp_path / "ran"
    dump(Payload(marker), path)
    message = refused(load_model, path)
    assert message.startswith(
        f"{path} holds {what}, not a skops archive, though it is named .skops; db3learn never unpickles a file."
    )
    assert main(["serve", str(path), "--port", "9"]) == 1
    assert capsys.readouterr().err == f"db3learn serve: error: {message}\n"
    assert not marker.exists()


def _zip(members):
    def write(data, path):
        with zipfile.ZipFile(path, "w") as z:
            for name, text in members.items():
                z.writestr(name, text)

    return write


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (lambda data, path: path.write_bytes(data[: len(data) // 2]), zipfile.BadZipFile),  # truncated download
        (lambda data, path: path.write_bytes(data[:-1]), zipfile.BadZipFile),
        (
            lambda data, path: path.write_bytes(data[:40] + bytes(b ^ 0xFF for b in data[40:80]) + data[80:]),
            zipfile.BadZipFile,
        ),
        (lambda data, path: _zip({"hello.txt": "x"})(data, path), KeyError),  # another zip file
        (lambda data, path: _zip({"schema.json": "{nope"})(data, path), ValueError),
        (lambda data, path: _zip({"schema.json": "[]"})(data, path), AttributeError),
    ],
    ids=["half", "last-byte-cut", "bytes-flipped", "other-zip", "schema-not-json", "schema-of-another-shape"],
)
def test_damaged_skops_file_gives_one_clear_line(skops_bytes, tmp_path, damage, cause):
    path = tmp_path / "model.skops"
    path.write_bytes(skops_bytes)
    assert load_model(path).predict(np.zeros((1, 64))).shape == (1,)  # the intact file loads
    damage(skops_bytes, path)
    with pytest.raises(ValueError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(
        f"{path} is not a readable .skops file ({cause.__name__ if cause is not ValueError else 'JSONDecodeError'}: "
    )
    assert message.endswith(
        "): expected a complete zip archive written by skops.io.dump. The file may be truncated or damaged; save the model "
        "again with skops.io.dump(model, path)."
    )
    assert "\n" not in message and isinstance(info.value.__cause__, cause)


def test_malicious_weights_are_refused_and_not_run(student, tmp_path, capsys):
    marker, weights = tmp_path / "ran", student / "weights.pt"
    torch.save({"net.0.weight": Payload(marker)}, weights)
    message = refused(load_student, weights.parent)
    assert message == (
        f"{weights} holds objects other than tensors, which torch.load(weights_only=True) refuses, so nothing in it was run or "
        f"loaded: expected the state_dict written by save_student. {REDO}"
    )
    assert main(["serve", str(student), "--port", "9"]) == 1  # load_model reads a directory as a student
    assert capsys.readouterr().err == f"db3learn serve: error: {message}\n"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "is not a readable PyTorch weights file (RuntimeError: "),
        (
            lambda p: p.write_bytes(b""),
            "is not a readable PyTorch weights file (EOFError: no detail): it may be truncated or damaged.",
        ),
        (lambda p: torch.save(torch.zeros(3), p), f"holds a Tensor; expected a state_dict (a dict of tensors). {REDO}"),
        (lambda p: torch.save({"net.0.weight": torch.zeros(3, 3)}, p), "does not fit the architecture in "),
    ],
    ids=["truncated", "empty", "a-tensor", "other-shapes"],
)
def test_damaged_weights_give_one_clear_line(student, damage, expected):
    weights = student / "weights.pt"
    damage(weights)
    message = refused(load_student, student)
    assert message.startswith(f"{weights} ") and expected in message and message.endswith(REDO)


def _edit(change):
    def apply(config_path):
        config = json.loads(config_path.read_text())
        change(config)
        config_path.write_text(json.dumps(config))

    return apply


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            _edit(lambda c: c["module_params"].update(bogus=1, activation="relu")),
            " gives MLP parameters it does not take: ['activation', 'bogus']; it takes ['n_features', 'n_classes', "
            "'hidden_units', 'dropout']. Remove them from the file, or save the student again",
        ),
        (
            _edit(lambda c: c.update(module_params=[64, 10])),
            ": module_params must be an object of MLP's parameters; got a list.",
        ),
        (_edit(lambda c: c["module_params"].update(hidden_units="many")), ": MLP cannot be built from module_params "),
        (_edit(lambda c: c.pop("classes")), " lacks the keys ['classes'] of a db3learn student configuration."),
        (
            _edit(lambda c: c.update(classes_dtype="<q9")),
            " holds classes, n_features_in, input_affine, input_columns or point_masses of the wrong form (TypeError: ",
        ),
        (
            _edit(lambda c: c.update(n_features_in="sixty-four")),
            " holds classes, n_features_in, input_affine, input_columns or point_masses of the wrong form (ValueError: ",
        ),
        (
            _edit(lambda c: c.update(point_masses=[[999, 0.0]])),
            " holds classes, n_features_in, input_affine, input_columns or point_masses of the wrong form (ValueError: "
            "point_masses name columns outside 0..63)",
        ),
        (lambda p: p.write_text(p.read_text()[:-20]), " is not JSON (JSONDecodeError: "),
    ],
    ids=[
        "unknown-params",
        "params-not-object",
        "bad-param-value",
        "missing-key",
        "bad-dtype",
        "bad-n-features",
        "bad-point-mass",
        "cut",
    ],
)
def test_damaged_student_json_gives_one_clear_line(student, damage, expected):
    config = student / "student.json"
    damage(config)
    message = refused(load_student, student)
    assert message.startswith(f"{config}{expected}") and message.endswith(
        "again with db3learn.io.save_student or `db3learn distill`."
    )


def test_unknown_top_level_keys_are_ignored(student, digits):
    before = load_student(student).predict(digits[2])
    _edit(lambda c: c.update(comment="added by a later version"))(student / "student.json")
    np.testing.assert_array_equal(load_student(student).predict(digits[2]), before)
