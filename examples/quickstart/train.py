"""Fit a ridge-regularised polynomial to noisy samples of sin(x) and report its error.

Pure Python (no numpy) so the demo runs on any machine with Python.
"""

import json
import math
import random

import yaml

with open("params.yaml") as f:
    params = yaml.safe_load(f)

rng = random.Random(params["seed"])
n, noise = params["data"]["n"], params["data"]["noise"]
degree, alpha = params["model"]["degree"], params["model"]["alpha"]

xs = [rng.uniform(-3, 3) for _ in range(n)]
ys = [math.sin(x) + rng.gauss(0, noise) for x in xs]
split = int(0.8 * n)


def features(x):
    return [x**p for p in range(degree + 1)]


# Normal equations (X^T X + alpha I) w = X^T y, solved by Gaussian elimination.
k = degree + 1
a = [[0.0] * k for _ in range(k)]
b = [0.0] * k
for x, y in zip(xs[:split], ys[:split]):
    f = features(x)
    for i in range(k):
        b[i] += f[i] * y
        for j in range(k):
            a[i][j] += f[i] * f[j]
for i in range(k):
    a[i][i] += alpha
for col in range(k):
    pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
    a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
    for r in range(k):
        if r != col:
            factor = a[r][col] / a[col][col]
            a[r] = [ar - factor * ac for ar, ac in zip(a[r], a[col])]
            b[r] -= factor * b[col]
w = [b[i] / a[i][i] for i in range(k)]


def predict(x):
    return sum(wi * fi for wi, fi in zip(w, features(x)))


test = list(zip(xs[split:], ys[split:]))
mse = sum((predict(x) - y) ** 2 for x, y in test) / len(test)
mean = sum(y for _, y in test) / len(test)
var = sum((y - mean) ** 2 for _, y in test) / len(test)
metrics = {"rmse": round(math.sqrt(mse), 6), "r2": round(1 - mse / var, 6)}
with open("metrics.json", "w") as f:
    json.dump(metrics, f, indent=2)
print(f"degree={degree} alpha={alpha} -> rmse={metrics['rmse']:.4f} r2={metrics['r2']:.4f}")
