"""Train a toy model; DVC's ${train} in dvc.yaml passes --lr and --epochs."""

import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, required=True)
args = parser.parse_args()
words = open("data/prepared.txt").read().split()
skill = 1 - (1 - min(args.lr * 5, 0.9)) ** args.epochs
json.dump({"skill": skill, "vocabulary": len(set(words))}, open("model.json", "w"))
print(f"trained lr={args.lr} epochs={args.epochs}")
