"""The ``device="cuda"`` paths: a TorchTeacher answering on a GPU, a student training on one.

Skipped where torch sees no CUDA device (CI has none); run them on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

import numpy as np
import pytest
import torch

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, TorchTeacher
from db3learn.io import load_student, save_student
from db3learn.models import MLP

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def torch_teacher(digits):
    """A small MLP trained on the digits, on the CPU (so both devices start from the same weights)."""
    X, y, _, _ = digits
    torch.manual_seed(0)
    module = MLP(n_features=64, n_classes=10, hidden_units=(64,))
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(Xt), yt).backward()
        opt.step()
    return module.eval()


def _copy(module):
    clone = type(module)(n_features=64, n_classes=10, hidden_units=(64,))
    clone.load_state_dict(module.state_dict())
    return clone.eval()


def test_torch_teacher_on_cuda_answers_like_the_cpu(torch_teacher, digits):
    X = digits[2]
    cpu_teacher = TorchTeacher(_copy(torch_teacher), device="cpu")
    cpu = cpu_teacher.predict(X)
    gpu_teacher = TorchTeacher(_copy(torch_teacher), device="cuda")
    gpu = gpu_teacher.predict(X)
    assert next(gpu_teacher.model.parameters()).device.type == "cuda"
    assert isinstance(gpu, np.ndarray) and gpu.shape == (len(X),)
    assert np.mean(gpu == cpu) > 0.99  # float rounding may flip a row that sits on a boundary
    assert gpu_teacher.n_queries == cpu_teacher.n_queries > 0


def test_boundary_distances_from_a_cuda_teacher_match_the_cpu(torch_teacher, digits):
    X = digits[0]
    distances = {}
    for device in ("cpu", "cuda"):
        teacher = TorchTeacher(_copy(torch_teacher), device=device)
        labeler = DecisionBoundarySoftLabeler(teacher, n_directions=3, random_state=0).fit(X[:300])
        distances[device] = labeler.boundary_distances(X[300:400])
    finite = np.isfinite(distances["cpu"])
    np.testing.assert_array_equal(finite, np.isfinite(distances["cuda"]))
    # a binary search that meets a rounding flip ends one step apart: compare medians, not every entry
    assert np.median(np.abs(distances["cpu"][finite] - distances["cuda"][finite])) < 1e-3


def test_student_trains_on_cuda_and_predicts_numpy(torch_teacher, digits, tmp_path):
    X, _, X_test, _ = digits
    teacher = TorchTeacher(_copy(torch_teacher), device="cuda")
    student = DB3Distiller(
        teacher, soft_labeler=DecisionBoundarySoftLabeler(n_directions=3), max_epochs=30, device="cuda", random_state=0
    ).fit(X[:300])
    assert next(student.student_.module_.parameters()).device.type == "cuda"
    proba = student.predict_proba(X_test)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert student.score(X_test) > 0.8  # fidelity to the teacher; chance is 0.1
    # saved from the GPU, loaded on the CPU: the same answers
    loaded = load_student(save_student(student, tmp_path / "student"))
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X_test), proba, atol=1e-4)
