"""Normalise the raw text (prepare.lowercase in params.yaml)."""

import sys

import yaml

lower = yaml.safe_load(open("params.yaml"))["prepare"]["lowercase"]
text = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(text.lower() if lower else text)
