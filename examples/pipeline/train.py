"""Fit y = w*x to the prepared data by gradient descent; write the model and metrics."""

import argparse
import json

import yaml

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, required=True)
epochs = parser.parse_args().epochs
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]

ys = [float(x) for x in open("data/prepared.csv")]
xs = [i + 1.0 for i in range(len(ys))]
w = 0.0
for _ in range(epochs):
    grad = sum(2 * (w * x - y) * x for x, y in zip(xs, ys)) / len(xs)
    w -= lr * grad / 100
loss = sum((w * x - y) ** 2 for x, y in zip(xs, ys)) / len(xs)
open("model.pkl", "w").write(f"{w}\n")
json.dump({"loss": round(loss, 6), "w": round(w, 6)}, open("metrics.json", "w"))
print(f"lr={lr} epochs={epochs} -> loss={loss:.4f}")
