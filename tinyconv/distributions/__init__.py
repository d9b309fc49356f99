"""``tinyconv.distributions``: PyTorch's probability distributions that the course uses, sampling from
tinyconv's generator (``tc.manual_seed`` makes draws repeatable).

    from tinyconv.distributions import multinomial
    counts = multinomial.Multinomial(10, tc.ones(6) / 6).sample((500,))   # (500, 6) float32 counts
"""
from . import multinomial, normal
from .distribution import Distribution
from .multinomial import Multinomial
from .normal import Normal

__all__ = ["Distribution", "Multinomial", "Normal", "multinomial", "normal"]
