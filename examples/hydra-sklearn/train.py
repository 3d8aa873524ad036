"""A Hydra app as teams write them: a config group per model family, instantiated by
``_target_``, scikit-learn, and the hydra-colorlog logging plugin."""

import json
import logging

import hydra
from hydra.utils import instantiate
from sklearn.datasets import make_regression
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    X, y = make_regression(
        n_samples=cfg.data.n_samples,
        n_features=cfg.data.n_features,
        noise=cfg.data.noise,
        random_state=cfg.seed,
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=cfg.data.test_size, random_state=cfg.seed
    )
    model = instantiate(cfg.model).fit(X_train, y_train)
    pred = model.predict(X_test)
    scores = {"r2": r2_score(y_test, pred), "mae": mean_absolute_error(y_test, pred)}
    json.dump(scores, open("metrics.json", "w"))
    log.info("%s: r2=%.4f", type(model).__name__, scores["r2"])


if __name__ == "__main__":
    main()
