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
    assert t.data[0] == 1
    assert np.shares_memory(tc.as_tensor(a).data, a)


def test_basic_attributes_and_conversions():
    t = tc.tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert tc.tensor([[3.5]]).item() == 3.5
    assert np.asarray(t) is t.data
    assert t.numpy() is t.data
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
    np.testing.assert_allclose(x.grad.data, [3.0, 4.0])


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
    np.testing.assert_array_equal((t == tc.tensor([1.0, 0.0, 3.0])).data, [True, False, True])
    assert len({t: 1, tc.tensor([1.0]): 2}) == 2


def test_manual_seed_makes_random_tensors_repeatable_and_state_round_trips():
    tc.manual_seed(123)
    a = tc.randn(3, 4)
    state = tc.get_rng_state()
    b = tc.rand(5)
    tc.manual_seed(123)
    np.testing.assert_array_equal(tc.randn(3, 4).data, a.data)
    tc.set_rng_state(state)
    np.testing.assert_array_equal(tc.rand(5).data, b.data)
    with pytest.raises(ValueError, match="non-negative integer"):
        tc.manual_seed(-1)


def test_factories():
    assert tc.zeros(2, 3).dtype == np.float32 and tc.zeros((2, 3)).shape == (2, 3)
    assert tc.ones(2, dtype="float64").dtype == np.float64
    assert tc.arange(5).dtype == np.int64 and tc.arange(0.0, 1.0, 0.5).dtype == np.float32
    assert tc.full((2,), 7.0).data.tolist() == [7.0, 7.0]
    assert tc.zeros_like(tc.ones(2, dtype="float64")).dtype == np.float64
