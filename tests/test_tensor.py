"""Tensor construction, dtypes, conversions and the error messages of bad input."""
from __future__ import annotations

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F


def test_python_data_follows_pytorchs_dtype_rules_and_arrays_keep_dtype():
    assert tc.tensor([[1, 2], [3, 4]]).dtype == np.int64  # Python ints: int64, as torch.tensor
    assert tc.tensor([1, 2.5]).dtype == np.float32 and tc.tensor(3).dtype == np.int64
    assert tc.tensor(1.5).dtype == np.float32
    assert tc.Tensor([1, 2]).dtype == np.float32  # the constructor, like torch.Tensor, makes floats
    assert tc.tensor(np.zeros(3, dtype=np.float64)).dtype == np.float64
    assert tc.tensor(np.zeros(3, dtype=np.int64)).dtype == np.int64
    assert tc.tensor([True, False]).dtype == np.bool_
    assert tc.tensor([1, 2], dtype="float64").dtype == np.float64
    assert tc.tensor([1, 2], dtype=tc.int64).dtype == np.int64


def test_tensor_copies_but_as_tensor_shares():
    a = np.ones(3, dtype=np.float32)
    t = tc.tensor(a)
    a[0] = 5
    assert t.numpy()[0] == 1
    assert np.shares_memory(tc.as_tensor(a).numpy(), a)


def test_basic_attributes_and_conversions():
    t = tc.tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert tc.tensor([[3.5]]).item() == 3.5
    assert np.asarray(t) is t.numpy() and t.numpy() is t.numpy()  # the storage itself, no copy
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert t.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert repr(tc.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"


def test_item_on_many_elements_raises():
    with pytest.raises(ValueError, match="a Tensor with 3 elements cannot be converted to a Python scalar"):
        tc.tensor([1.0, 2.0, 3.0]).item()


def test_unknown_dtype_is_rejected_with_the_supported_list():
    with pytest.raises(TypeError, match=r"unsupported dtype .*complex64.*float32, float64"):
        tc.tensor([1.0], dtype="complex64")
    with pytest.raises(TypeError, match="unsupported dtype"):
        tc.tensor(np.zeros(2, dtype=np.complex128))
    with pytest.raises(TypeError, match="unsupported dtype 'float128x'"):
        tc.zeros(2, dtype="float128x")
    with pytest.raises(TypeError, match="cannot make a tensor from list data of dtype <U1"):
        tc.tensor(["a", "b"])


def test_only_float_tensors_can_require_grad():
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients.*int64"):
        tc.tensor(np.array([1, 2]), requires_grad=True)


def test_python_scalars_keep_tensor_dtype():
    t = tc.tensor([1.0, 2.0])
    assert (t * 2.5).dtype == np.float32
    assert (1 - t).dtype == np.float32
    assert (t ** 2).dtype == np.float32
    assert (t + tc.tensor(np.ones(2))).dtype == np.float64  # tensor-tensor follows NumPy promotion


def test_numpy_array_on_the_left_uses_tensor_operators():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], dtype=np.float32) * x
    assert isinstance(y, tc.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_broadcasting_mismatch_message_names_sizes_and_dimension():
    a, b = tc.ones(2, 3), tc.ones(4)
    with pytest.raises(ValueError, match=r"size of tensor a \(3\) must match the size of tensor b \(4\) at "
                                         r"non-singleton dimension 1 \(shapes \(2, 3\) and \(4,\)"):
        a + b
    with pytest.raises(RuntimeError):  # also catchable as PyTorch's RuntimeError
        a * b


def test_matmul_bad_shapes_message():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied.*3.*4"):
        tc.ones(2, 3) @ tc.ones(4, 5)
    with pytest.raises(ValueError, match=r"at least 1 dimension"):
        tc.tensor(2.0) @ tc.ones(2)
    with pytest.raises(ValueError, match=r"batch dimensions \(2,\) and \(3,\) do not broadcast"):
        tc.ones(2, 1, 4) @ tc.ones(3, 4, 1)


def test_reshape_errors_and_view():
    t = tc.ones(2, 3)
    assert t.view(3, 2).shape == (3, 2) and t.reshape((-1,)).shape == (6,)
    with pytest.raises(ValueError, match=r"shape \(4, 2\) is invalid for input of size 6"):
        t.reshape(4, 2)


def test_dim_out_of_range_message():
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        tc.ones(2, 3).sum(dim=2)


def test_cat_and_stack_shape_errors():
    with pytest.raises(ValueError, match=r"cat: sizes of tensors must match except in dimension 0.*\(2, 3\).*\(2, 4\)"):
        tc.cat([tc.ones(2, 3), tc.ones(2, 4)], 0)
    with pytest.raises(ValueError, match=r"stack expects each tensor to be equal size"):
        tc.stack([tc.ones(2), tc.ones(3)])


def test_loss_argument_errors():
    logits = tc.ones(3, 4)
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes"):
        F.cross_entropy(logits, [0, 1, 4])
    with pytest.raises(ValueError, match=r"expected integer class indices of shape \(3,\) or class probabilities of "
                                         r"the input's shape \(3, 4\) \(floating point\), got int64 of shape \(2,\)"):
        F.cross_entropy(logits, [0, 1])
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(logits, [0, 1, 2], reduction="avg")
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3, 4\) and target shape \(4,\) must be equal"):
        F.mse_loss(logits, tc.ones(4))
    with pytest.raises(ValueError, match=r"linear: input's last dimension must equal in_features=5"):
        F.linear(logits, tc.ones(2, 5))


def test_comparisons_give_bool_tensors_and_tensors_hash_by_identity():
    t = tc.tensor([1.0, 2.0, 3.0])
    assert (t > 1.5).dtype == np.bool_
    np.testing.assert_array_equal((t == tc.tensor([1.0, 0.0, 3.0])).numpy(), [True, False, True])
    assert len({t: 1, tc.tensor([1.0]): 2}) == 2


def test_manual_seed_makes_random_tensors_repeatable_and_state_round_trips():
    tc.manual_seed(123)
    a = tc.randn(3, 4)
    state = tc.get_rng_state()
    b = tc.rand(5)
    tc.manual_seed(123)
    np.testing.assert_array_equal(tc.randn(3, 4).numpy(), a.numpy())
    tc.set_rng_state(state)
    np.testing.assert_array_equal(tc.rand(5).numpy(), b.numpy())
    with pytest.raises(ValueError, match="non-negative integer"):
        tc.manual_seed(-1)


def test_factories():
    assert tc.zeros(2, 3).dtype == np.float32 and tc.zeros((2, 3)).shape == (2, 3)
    assert tc.ones(2, dtype="float64").dtype == np.float64
    assert tc.arange(5).dtype == np.int64 and tc.arange(0.0, 1.0, 0.5).dtype == np.float32
    assert tc.full((2,), 7.0).numpy().tolist() == [7.0, 7.0]
    assert tc.zeros_like(tc.ones(2, dtype="float64")).dtype == np.float64


# ------------------------------------------------------------------------------------------------ .data
def test_data_is_a_detached_tensor_sharing_storage():
    w = tc.tensor([[1.0, -2.0], [3.0, -4.0]], requires_grad=True)
    d = w.data
    assert isinstance(d, tc.Tensor) and not isinstance(d, np.ndarray)
    assert d.is_leaf and not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.numpy(), w.numpy()) and d.dtype == w.dtype and d.shape == w.shape
    d[0, 0] = 7.0
    assert w.tolist()[0][0] == 7.0
    assert repr(tc.zeros(3).data[0]) == "tensor(0.)"


def test_in_place_writes_through_data_are_not_seen_by_autograd():
    w = tc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (w * w).sum()  # saves w
    w.data.mul_(10)  # a leaf that requires grad, yet .data's in-place write is allowed and uncounted
    assert w._version == 0 and w.tolist() == [10.0, 20.0, 30.0]
    y.backward()  # no "modified by an inplace operation" error: the graph did not see the write
    assert w.grad.tolist() == [20.0, 40.0, 60.0]
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.mul_(2)  # the same write on w itself is refused


def test_the_books_data_idioms():
    tc.manual_seed(0)
    lin = tc.nn.Linear(20, 4)
    lin.weight.data.normal_(0, 0.01)
    lin.bias.data.fill_(0)
    assert abs(float(lin.weight.numpy().std()) - 0.01) < 0.005 and lin.bias.tolist() == [0.0] * 4
    assert repr(lin.bias.data[0]) == "tensor(0.)"
    lin.weight.data.uniform_(-10, 10)
    assert float(lin.weight.abs().max()) <= 10 and float(lin.weight.abs().max()) > 5
    lin.weight.data[0, 0] = 1.0
    array = lin.weight.numpy()
    lin.weight.data *= lin.weight.data.abs() >= 5  # the book's custom-init mask
    assert lin.weight.numpy() is array and lin.weight.numpy()[0, 0] == 0.0 and lin.weight.requires_grad
    x = tc.randn(3, 20)
    lin(x).sum().backward()
    grad = lin.weight.grad.numpy().copy()
    expected = array - np.float32(0.1) * grad
    lin.weight.data.sub_(0.1 * lin.weight.grad)  # sgd from scratch
    assert lin.weight.numpy() is array and grad.any()
    np.testing.assert_allclose(array, expected, rtol=1e-6)
    lin.weight.grad.data.zero_()
    assert not lin.weight.grad.numpy().any()
    p = tc.tensor([1.0, 2.0], requires_grad=True)
    p.data -= 0.5 * tc.tensor([2.0, 2.0])  # old code's arithmetic on .data keeps working
    assert p.tolist() == [0.0, 1.0] and p.requires_grad and p.is_leaf


def test_assigning_data_swaps_the_storage():
    w = tc.zeros(2, 3, requires_grad=True)
    new = tc.ones(4)
    w.data = new
    assert w.shape == (4,) and w.requires_grad and np.shares_memory(w.numpy(), new.numpy())
    with pytest.raises(TypeError, match="must be set to a Tensor, but got ndarray"):
        w.data = np.zeros(4)
    with pytest.raises(RuntimeError, match="requires grad"):
        w.data = tc.zeros(4, dtype=tc.int64)
    assert w.shape == (4,) and w.dtype == np.float32  # refused assignments change nothing


# ------------------------------------------------------------------------------------------------ Size
def test_shape_and_size_are_a_size_that_behaves_like_a_tuple():
    x = tc.zeros(1, 96, 54, 54)
    assert isinstance(x.shape, tc.Size) and isinstance(x.size(), tc.Size) and isinstance(x.shape, tuple)
    assert repr(x.shape) == str(x.size()) == "tinyconv.Size([1, 96, 54, 54])" and f"{x.shape}" == str(x.shape)
    assert str(tc.zeros(()).shape) == "tinyconv.Size([])" and str(tc.zeros(5).shape) == "tinyconv.Size([5])"
    assert x.shape == (1, 96, 54, 54) and (1, 96, 54, 54) == x.size() and x.shape != (1, 96, 54)
    assert hash(x.shape) == hash((1, 96, 54, 54)) and {(1, 96, 54, 54): "a"}[x.shape] == "a"
    n, c, h, w = x.shape
    assert (n, c, h, w) == (1, 96, 54, 54) and all(type(v) is int for v in x.shape)
    assert x.size(1) == 96 and x.size(-1) == 54 and x.shape[0] == 1 and x.shape[-2] == 54
    assert repr(x.shape[2:]) == "tinyconv.Size([54, 54])" and isinstance((1, 1) + x.shape[2:], tc.Size)
    assert (1, 1) + x.shape[2:] == (1, 1, 54, 54) and x.shape[:1] + (3,) == (1, 3)
    assert x.shape.numel() == x.numel() == 96 * 54 * 54 and tc.Size([]).numel() == 1
    assert tc.zeros(x.shape[1:]).shape == (96, 54, 54) and x.reshape(x.shape[0], -1).shape == (1, 96 * 54 * 54)
    assert len(x.shape) == 4 and list(x.shape) == [1, 96, 54, 54]
    with pytest.raises(TypeError, match=r"iterable of 'int' \(item 0 is 'float'\)"):
        tc.Size([1.5])
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.size(4)
