"""
Distill a scikit-learn model
============================

The teacher is a support-vector classifier on scikit-learn's 8x8 digits. db3learn only calls
its ``predict``: no probabilities, no decision function. :class:`~db3learn.DB3Distiller`
distills it into a small PyTorch MLP, with its defaults (the teacher's labels of mixtures of
transfer digits) and with DB3KD's soft labels from boundary distances (``mixup=0``), and we
compare both with a *copycat* trained on the teacher's hard labels alone (``kd_weight=0``).
"""

# %%
# The teacher and the data
# ------------------------
# The teacher is trained on 1,000 labelled digits. The student gets 300 *other* digits, with no
# labels: the teacher labels them. The last 497 digits are held out for scoring.
import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from db3learn import DB3Distiller, Teacher

torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0  # pixels in [0, 1]
X_teacher, y_teacher = X[:1000], y[:1000]
X_transfer = X[1000:1300]  # unlabelled transfer set
X_test, y_test = X[1300:], y[1300:]

svc = SVC().fit(X_teacher, y_teacher)
teacher = Teacher(svc)  # counts and caches the queries
print(f"teacher accuracy on held-out digits: {svc.score(X_test, y_test):.3f}")

# %%
# Distill, and train a copycat
# ----------------------------
# All three students are the default MLP. The copycat spends one query per sample and trains 50
# epochs on the 300 digits. The DB3KD student also asks for boundary distances (a batched
# binary search toward the 10 nearest reference digits of each other class), which become soft
# labels, and trains on the digits and on every row the search asked, with its label, for
# about 10,000 steps. The defaults spend 400 queries per digit on the teacher's labels of
# mixtures of two transfer digits, half of them picked where a first student is least sure,
# and train on the digits and the mixtures for about 10,000 steps.
copycat = DB3Distiller(teacher, kd_weight=0, random_state=0).fit(X_transfer)
db3kd = DB3Distiller(teacher, mixup=0, random_state=0).fit(X_transfer)
student = DB3Distiller(teacher, random_state=0).fit(X_transfer)

rows = {"copycat": copycat, "DB3KD (BD)": db3kd, "defaults": student}
for name, model in rows.items():
    print(
        f"{name:<12} accuracy {model.score(X_test, y_test):.3f}  "
        f"fidelity {model.score(X_test):.3f}  queries {model.n_queries_:,}"
    )
print(f"temperature chosen for DB3KD's soft labels: {db3kd.temperature_:.3f}")

# %%
# ``score(X)`` without labels is the **fidelity**, the agreement with the teacher. The copycat
# asked for the 300 labels first; the others got them from the teacher's cache, so their
# ``n_queries_`` count only the boundary searches or the mixtures.

fig, ax = plt.subplots(figsize=(6.5, 3))
names = list(rows)
ax.bar([n + "\naccuracy" for n in names], [m.score(X_test, y_test) for m in rows.values()], color="tab:blue")
ax.bar([n + "\nfidelity" for n in names], [m.score(X_test) for m in rows.values()], color="tab:orange")
ax.tick_params(axis="x", labelsize=7)
ax.set_ylim(0.8, 1.0)
ax.set_ylabel("accuracy or fidelity\n(497 held-out digits)")
ax.set_title("SVC teacher, MLP students")
fig.tight_layout()
plt.show()
