"""Differentiable functions: subclasses of :class:`tinyconv.autograd.Function`, each with a hand-written backward."""
