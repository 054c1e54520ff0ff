"""
Zero-shot: pseudo samples from the teacher alone
================================================

With no data at all, :class:`~db3learn.ZeroShotTransferSet` builds a transfer set from the
teacher's answers (ZSDB3KD): it draws noise until the teacher names every class, then pushes
each pseudo sample away from its nearest decision boundary, round after round. Here the
teacher is a support-vector classifier on the 8x8 digits; db3learn never sees a real digit.
:func:`db3learn.plotting.plot_pseudo_samples` shows what the teacher considers typical of
each class.
"""

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, ZeroShotTransferSet
from db3learn.plotting import plot_pseudo_samples

torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0
teacher = SVC().fit(X[:1000], y[:1000])  # the only thing db3learn is given

# %%
# Generate the pseudo samples
# ---------------------------
# 20 per class, 8 rounds of moving away from the boundaries, at most 150,000 queries.
# ``input_shape`` tells the generator the inputs are 8x8 images, so half its noise is smooth.
gen = ZeroShotTransferSet(
    teacher,
    n_samples_per_class=20,
    n_iter=8,
    input_shape=(8, 8),
    feature_range=(0.0, 1.0),
    max_queries=150_000,
    random_state=0,
)
X_pseudo, y_pseudo = gen.fit_resample()
print(f"{len(X_pseudo)} pseudo samples, {gen.n_queries_:,} queries")
print("per class:", gen.n_samples_per_class_)

fig = plot_pseudo_samples(
    X_pseudo,
    y_pseudo,
    image_shape=(8, 8),
    n_per_class=8,
    title="pseudo samples of an SVC digits teacher, one row per teacher label",
)
plt.show()

# %%
# Distill on them, score on real digits
# -------------------------------------
# The pseudo samples are the transfer set; their soft labels use the pseudo samples of the
# other classes as references, and the student also trains on every row those searches asked.
# It is scored on real digits it has never seen.
student = DB3Distiller(teacher, soft_labeler=DecisionBoundarySoftLabeler(n_directions=5), random_state=0).fit(X_pseudo)
print(f"student accuracy on 797 real digits: {student.score(X[1000:], y[1000:]):.3f}")
print(f"fidelity to the teacher:            {student.score(X[1000:]):.3f}")
