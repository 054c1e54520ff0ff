"""The student's weight average (Polyak averaging of the training steps' weights)."""

import numpy as np
import torch
from sklearn.datasets import load_digits
from skorch.callbacks import Callback

from db3learn._student import KDStudent, _WeightAverage
from db3learn.models import MLP


class _Recorder(Callback):
    """Copies of the module's weights after every training step."""

    def on_train_begin(self, net, **kwargs):
        self.weights_ = []

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.weights_.append([p.detach().clone() for p in net.module_.parameters()])


def _fit(callbacks):
    X, y = load_digits(return_X_y=True)
    X = (X[:300] / 16.0).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return KDStudent(
            MLP, module__n_features=64, module__n_classes=10, max_epochs=3, batch_size=64, callbacks=callbacks
        ).fit(X, y[:300])


def test_the_student_keeps_the_moving_average_of_its_steps_weights():
    recorder = _Recorder()
    student = _fit([("recorder", recorder), ("average", _WeightAverage(decay=0.9))])
    steps = recorder.weights_
    assert len(steps) == 15  # 3 epochs of 5 batches
    expected = steps[0]
    for w in steps[1:]:
        expected = [0.9 * a + 0.1 * b for a, b in zip(expected, w)]
    kept = list(student.module_.parameters())
    for got, want, last in zip(kept, expected, steps[-1]):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got.detach(), last)  # the average, not the last step's weights
    assert not hasattr(dict(student.callbacks_)["average"], "average_")  # its copy of the module is not kept


def test_without_the_average_the_student_keeps_its_last_steps_weights():
    recorder = _Recorder()
    student = _fit([("recorder", recorder)])
    for got, last in zip(student.module_.parameters(), recorder.weights_[-1]):
        torch.testing.assert_close(got.detach(), last)


def test_swa_keeps_the_uniform_average_of_the_second_half_of_the_steps():
    recorder = _Recorder()
    student = _fit([("recorder", recorder), ("average", _WeightAverage(decay=None))])
    steps = recorder.weights_
    assert len(steps) == 15  # 3 epochs of 5 batches: the average starts after step 7 of 15
    expected = [torch.stack(ws).mean(0) for ws in zip(*steps[7:])]
    for got, want, before in zip(
        student.module_.parameters(), expected, [torch.stack(ws).mean(0) for ws in zip(*steps[6:])]
    ):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(got.detach(), before)  # exactly the second half's steps, not one more
