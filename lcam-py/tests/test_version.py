"""The package's surface."""
import lcam
import lcam.torch


def test_surface():
    assert lcam.__version__
    assert isinstance(lcam.HAS_CUDA, bool)
    assert issubclass(lcam.torch.LCAM, __import__("torch").optim.Optimizer)
    assert lcam._lcam.preset("cifar10")["momentum_above"] == 0.95
