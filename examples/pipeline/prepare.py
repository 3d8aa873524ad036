"""Scale the raw data (reads prepare.* from params.yaml)."""

import yaml

scale = yaml.safe_load(open("params.yaml"))["prepare"]["scale"]
rows = [float(x) * scale for x in open("data/raw.csv")]
with open("data/prepared.csv", "w") as f:
    f.write("\n".join(str(r) for r in rows) + "\n")
print("prepared", len(rows), "rows")
