"""Benchmark h, the end of an image student's training: weight averages, and rows picked where the student is unsure.

The setting of benchmark h at 400 queries per transfer digit (LeNet-5 teacher, 1,000 transfer
digits, 1,000 held out, LeNet-5-half student): the mixup copycat, i.e. the transfer digits plus
399,000 teacher-labelled mixtures ``x_i + lam (x_j - x_i)`` of random pairs, trained as the
defaults train an image student (about 10,000 steps of 256, Adam at 1e-3). One training run per
seed scores, after every epoch and on the held-out digits, the student's own weights and three
averages of them kept along the way (``torch.optim.swa_utils.AveragedModel``): exponential moving
averages with decays 0.999 and 0.9999, and the uniform average of the second half's steps (SWA).
So each seed's averages and its plain student come from the same steps.

``--active`` picks the rows instead (the ActiveThief / KnockoffNets idea): half the budget as
random mixtures, a student trained on them for about 3,000 steps, then the other half chosen
from 800,000 random mixtures as those where that student's two highest probabilities are
closest, each labelled by the teacher; the final student trains on all 400,000 rows as above.

    python benchmarks/weight_average.py --seeds 3            # about 12 core-minutes per seed
    python benchmarks/weight_average.py --seeds 1 --active   # about 1.3 times that (a first student of 3,000 steps)

Results: ``results/<tag>.csv``, one row per seed, epoch and weights (fidelity and accuracy).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import lenet5_teacher, mnist_split, write_csv  # noqa: E402
from benchmarks.budget_curves import mixtures, train_student, training  # noqa: E402
from db3learn import TorchTeacher  # noqa: E402

HERE = Path(__file__).resolve().parent


class Averages(Callback):
    """Keeps the weight averages along the training steps and scores them, with the student's own, every epoch."""

    def __init__(self, steps, score):
        self.steps, self.score = steps, score

    def initialize(self):
        self.step_, self.averages_, self.log_ = 0, None, []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        module = net.module_
        if self.averages_ is None:
            self.averages_ = {
                f"ema {d}": AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(d)) for d in (0.999, 0.9999)
            }
        self.step_ += 1
        for average in self.averages_.values():
            average.update_parameters(module)
        if self.step_ > self.steps // 2:
            if "swa, second half" not in self.averages_:
                self.averages_["swa, second half"] = AveragedModel(module)
            else:
                self.averages_["swa, second half"].update_parameters(module)

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        self.log_.append((epoch, "the student's own", *self.score(net.module_)))
        for name, average in self.averages_.items():
            self.log_.append((epoch, name, *self.score(average.module)))
        print(self.log_[-1 - len(self.averages_) :], flush=True)


def active_rows(X_transfer, teacher, n, seed):
    """Half of ``n`` random mixtures, half picked from 4x as many where a student trained on the first is least sure."""
    half = n // 2
    X1 = np.concatenate([X_transfer, mixtures(X_transfer, half - len(X_transfer), seed)])
    y1 = teacher.predict(X1).astype(np.int64)
    first = train_student(X1, y1, seed, len(X_transfer), epochs=4)  # about 3,000 steps
    pool = mixtures(X_transfer, 4 * half, seed + 1000)
    top2 = np.sort(first.predict_proba(pool), axis=1)[:, -2:]
    X2 = pool[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[: n - half]]
    return np.concatenate([X1, X2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="student seeds (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (default 0)")
    parser.add_argument("--budget", type=int, default=400, help="queries per transfer digit (default 400)")
    parser.add_argument("--active", action="store_true", help="pick half the rows where the student is unsure")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the CSV files")
    parser.add_argument("--tag", default=None, help="name of the CSV file (default: weight_average[_active])")
    args = parser.parse_args(argv)
    tag = args.tag or ("weight_average_active" if args.active else "weight_average")
    Path(args.out).mkdir(parents=True, exist_ok=True)

    X_train, y_train, X_transfer, X_test, y_test = mnist_split(n_transfer=1000)
    module = lenet5_teacher(X_train, y_train)
    with torch.no_grad():
        teacher_test = module(torch.from_numpy(X_test)).argmax(1).numpy()
    print(f"teacher accuracy {np.mean(teacher_test == y_test):.4f}", flush=True)

    def score(net):
        net.eval()
        with torch.no_grad():
            pred = net(torch.from_numpy(X_test)).argmax(1).numpy()
        net.train()
        return float(np.mean(pred == teacher_test)), float(np.mean(pred == y_test))

    records = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        start = time.perf_counter()
        teacher = TorchTeacher(module)
        n = len(X_transfer) * args.budget
        if args.active:
            X = active_rows(X_transfer, teacher, n, seed)
        else:
            X = np.concatenate([X_transfer, mixtures(X_transfer, n - len(X_transfer), seed)])
        y = teacher.predict(X).astype(np.int64)
        epochs, batch = training(len(X), len(X_transfer))
        averages = Averages(epochs * -(-len(X) // batch), score)
        train_student(X, y, seed, len(X_transfer), callbacks=[("averages", averages)])
        seconds = round(time.perf_counter() - start, 1)
        for epoch, weights, fidelity, accuracy in averages.log_:
            records.append(
                dict(
                    seed=seed,
                    epoch=epoch,
                    weights=weights,
                    fidelity=fidelity,
                    accuracy=accuracy,
                    queries_per_sample=teacher.n_queries / len(X_transfer),
                    fit_seconds=seconds,
                )
            )
        write_csv(Path(args.out) / f"{tag}.csv", records)


if __name__ == "__main__":
    main()
