"""LCAM: Loss-Controlled Asymmetric Momentum (Zhang et al., arXiv 2309.02130).

SGD with momentum whose coefficient switches between ``momentum_below`` and ``momentum_above``
depending on whether the last batch loss was below the running mean loss of the epoch. The
update and the phase rule are lcam-core's (Rust), run in place on the tensors' memory.

- :class:`lcam.torch.LCAM`: the PyTorch optimizer (``import lcam.torch``; needs torch).
- :class:`NonFiniteLossError`: raised by ``step`` for a NaN or infinite loss (a ``ValueError``);
  nothing is changed.
- ``HAS_CUDA``: whether this build can step CUDA tensors (cargo feature ``cuda``).
"""
from ._lcam import HAS_CUDA, NonFiniteLossError, __version__

__all__ = ["HAS_CUDA", "NonFiniteLossError", "__version__"]
