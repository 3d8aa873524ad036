"""Two toy models that a Hydra config group chooses between (``_target_``)."""


class Linear:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def score(self, n: int) -> float:
        return 1 - self.lr / n


class Poly:
    def __init__(self, degree: int, lr: float) -> None:
        self.degree, self.lr = degree, lr

    def score(self, n: int) -> float:
        return 1 - self.lr / (n * self.degree)
