"""
The soft-label matrix
=====================

:class:`~db3learn.DecisionBoundarySoftLabeler` turns a label-only teacher into soft labels: for
each sample, the distance to each class's region becomes a probability,
``softmax(-d / T)``. :func:`db3learn.plotting.plot_soft_labels` draws them as a samples x
classes heat map. The temperature ``T`` changes the picture without a single new query: the
distances are cached.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from db3learn import DecisionBoundarySoftLabeler, Teacher
from db3learn.plotting import plot_soft_labels

X, y = load_digits(return_X_y=True)
X = X / 16.0
teacher = Teacher(LogisticRegression(max_iter=1000).fit(X[:1000], y[:1000]))

labeler = DecisionBoundarySoftLabeler(teacher).fit(X[1000:1500])  # references: unlabelled digits
samples = X[1500:1510]
D = labeler.boundary_distances(samples)
print("boundary distances (pixel units), first sample:", np.round(D[0], 2))
print(f"queries so far: {teacher.n_queries:,}")

# %%
# Two temperatures, one search
# ----------------------------
# One matrix above the other, so that the figure stays 7.5 inches wide and its numbers stay
# legible at page width.
fig, axes = plt.subplots(2, 1, figsize=(7.5, 10), layout="constrained")
names = [f"true {label}" for label in y[1500:1510]]  # for the reader; db3learn never sees them
for ax, T in zip(axes, (0.3, 1.0)):
    labeler.set_params(temperature=T)
    plot_soft_labels(
        labeler.transform(samples), classes=labeler.classes_, sample_names=names, ax=ax, title=f"soft labels at T = {T}"
    )
print(f"queries after both temperatures: {teacher.n_queries:,} (nothing new)")
plt.show()

# %%
# Each row's largest value is the teacher's class (where it differs from the true digit, the
# teacher is wrong). The other values say which classes
# the teacher would confuse the sample with: digits close to another class's region spread
# their mass, digits deep inside their own region do not. A higher temperature softens every
# row alike.
