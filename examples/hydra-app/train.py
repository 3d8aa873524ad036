"""A Hydra app: the model comes from the config group `model`, instantiated by _target_."""

import json

import hydra
from hydra.utils import instantiate


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    model = instantiate(cfg.model)
    score = model.score(cfg.data.n)
    json.dump({"score": score}, open("metrics.json", "w"))
    print(f"{type(model).__name__}: score={score:.4f}")


if __name__ == "__main__":
    main()
