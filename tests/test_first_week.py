"""A first-week user's mistakes get PyTorch's answers: a float64 batch into a float32 layer is refused, as PyTorch
refuses it; class-probability targets and label smoothing work in cross_entropy; a training checkpoint handed to
load_state_dict says where the weights are; and a trained checkpoint becomes a model in one line."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn
from tinyconv.data import DataLoader
from tinyconv.train import Trainer, model_from_checkpoint


@pytest.mark.parametrize("layer, x", [
    (nn.Conv2d(1, 3, 3), tc.randn(2, 1, 6, 6, dtype=tc.float64)),
    (nn.Conv2d(1, 3, 3, bias=False), tc.randn(2, 1, 6, 6, dtype=tc.float64)),
    (nn.ConvTranspose2d(1, 3, 3), tc.randn(2, 1, 6, 6, dtype=tc.float64)),
    (nn.Linear(4, 3), tc.randn(2, 4, dtype=tc.float64)),
    (nn.BatchNorm2d(1), tc.randn(2, 1, 6, 6, dtype=tc.float64)),
    (nn.BatchNorm1d(4), tc.randn(2, 4, dtype=tc.float64)),
    (nn.models.LeNet(), tc.randn(2, 1, 28, 28, dtype=tc.float64)),
])
def test_a_float64_batch_into_a_float32_layer_is_refused(layer, x):
    with pytest.raises(tc.DTypeError, match=r"Input type \(double\) and \w+ type \(float\) should be the same"):
        layer(x)
    with pytest.raises(RuntimeError):  # PyTorch's exception type works too
        layer(x)
    np.testing.assert_equal(layer.double()(x).dtype, np.float64)  # the fix the message names


def test_a_float32_batch_into_a_float64_layer_is_refused_too():
    with pytest.raises(tc.DTypeError, match=r"Input type \(float\) and weight type \(double\)"):
        F.conv2d(tc.randn(1, 1, 5, 5), tc.randn(2, 1, 3, 3, dtype=tc.float64))
    with pytest.raises(tc.DTypeError, match=r"Input type \(float\) and bias type \(double\)"):
        F.linear(tc.randn(2, 3), tc.randn(4, 3), tc.randn(4, dtype=tc.float64))
    with pytest.raises(tc.DTypeError, match=r"expected a floating-point input.*int64"):
        F.conv2d(tc.ones(1, 1, 5, 5, dtype=tc.int64), tc.randn(2, 1, 3, 3))


def _reference_ce_probabilities(x, p, w, eps, reduction, class_dim=1):
    c = x.shape[class_dim]
    logp = x - x.max(axis=class_dim, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=class_dim, keepdims=True))
    p = p * (1 - eps) + eps / c
    shape = [1] * x.ndim
    shape[class_dim] = c
    wb = np.ones(c) if w is None else w
    losses = -(logp * p * wb.reshape(shape)).sum(axis=class_dim)
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2, 2)])
def test_cross_entropy_with_class_probabilities(reduction, eps, weighted, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    p = rng.dirichlet(np.ones(shape[1]), size=(shape[0],) + shape[2:])
    p = np.moveaxis(p, -1, 1)
    w = rng.uniform(0.5, 2, shape[1]) if weighted else None
    got = F.cross_entropy(tc.tensor(x), tc.tensor(p), weight=None if w is None else tc.tensor(w),
                          reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(got.numpy(), _reference_ce_probabilities(x, p, w, eps, reduction), rtol=1e-12)


def test_cross_entropy_probabilities_gradient():
    rng = np.random.default_rng(1)
    x = tc.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    p = tc.tensor(rng.dirichlet(np.ones(3), 4))
    assert tc.gradcheck(lambda x: F.cross_entropy(x, p, label_smoothing=0.1), (x,))


def test_one_hot_probabilities_equal_class_indices():
    rng = np.random.default_rng(2)
    x, y = tc.tensor(rng.standard_normal((6, 5))), rng.integers(0, 5, 6)
    onehot = tc.tensor(np.eye(5)[y])
    for eps in (0.0, 0.1):
        np.testing.assert_allclose(F.cross_entropy(x, onehot, label_smoothing=eps).item(),
                                   F.cross_entropy(x, tc.tensor(y), label_smoothing=eps).item(), rtol=1e-12)


def test_cross_entropy_target_of_neither_form_names_both():
    with pytest.raises(tc.ShapeError, match=r"class indices of shape \(3,\) or class probabilities of the "
                                            r"input's shape \(3, 5\).*got float32 of shape \(3, 4\)"):
        F.cross_entropy(tc.randn(3, 5), tc.rand(3, 4) + 0.5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    tc.manual_seed(0)
    model = nn.models.LeNet("bn")
    x = np.random.default_rng(0).integers(0, 255, (64, 28, 28)).astype(np.uint8)
    y = np.arange(64) % 10
    opt = tc.optim.Adam(model.parameters(), lr=1e-3)
    trainer = Trainer(model, opt, DataLoader((x, y), batch_size=32), epochs=1, out_dir=out, progress=False,
                      config={"model": "lenet", "variant": "bn", "kernel": None})
    trainer.fit()
    return out / "checkpoint.npz", model


def test_model_from_checkpoint_in_one_line(checkpoint):
    path, trained = checkpoint
    model = model_from_checkpoint(path)
    assert isinstance(model, nn.models.LeNet) and not model.training
    for (k, a), (_, b) in zip(model.state_dict().items(), trained.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    x = tc.randn(3, 1, 28, 28)
    np.testing.assert_array_equal(model(x).numpy(), trained.eval()(x).numpy())


def test_load_state_dict_of_a_training_checkpoint_says_where_the_weights_are(checkpoint):
    path, _ = checkpoint
    model = nn.models.LeNet("bn")
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"training checkpoint.*under \['model'\].*model_from_checkpoint"):
        model.load_state_dict(tc.load(path))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    model.load_state_dict(tc.load(path)["model"])  # what the message says works


def test_model_from_checkpoint_refuses_other_files(tmp_path):
    tc.save(nn.models.LeNet().state_dict(), tmp_path / "weights.npz")
    with pytest.raises(tc.CheckpointError, match="weights.npz"):
        model_from_checkpoint(tmp_path / "weights.npz")


def test_promoting_dtypes_is_a_scoped_exception_for_tools():
    """The explorer's float64 check runs a caller's float32 data through float64 parameters: inside
    F.promoting_dtypes() a layer computes in the wider dtype, outside it refuses again."""
    layer, x = nn.Linear(3, 2).double(), tc.randn(4, 3)
    with F.promoting_dtypes():
        assert layer(x).dtype == np.float64
        assert F.batch_norm(x, np.zeros(3), np.ones(3)).dtype == np.float32
    with pytest.raises(tc.DTypeError):
        layer(x)
