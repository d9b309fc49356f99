"""tinyconv.data.loader: shapes, dtypes, normalisation, shuffling, exact resume, augmentation."""

import json
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyconv.data import DataLoader, random_shift


def make_data(n=23, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=n).astype(np.int64))


def collect(loader):
    xs, ys = zip(*loader)
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------------------- batches

@pytest.mark.parametrize("drop_last,sizes", [(False, [5, 5, 5, 5, 3]), (True, [5, 5, 5, 5])])
def test_batch_shapes_dtypes_and_drop_last(drop_last, sizes):
    loader = DataLoader(make_data(23), batch_size=5, drop_last=drop_last)
    assert len(loader) == len(sizes)
    batches = list(loader)
    assert [len(x) for x, _ in batches] == sizes
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (1, 28, 28) and x.flags.c_contiguous
        assert y.dtype == np.int64 and y.shape == (len(x),)


@pytest.mark.parametrize("n, batch, drop_last, sizes", [(23, 5, False, [5, 3]), (23, 5, True, [5]), (20, 5, False, [5]),
                                                         (3, 5, False, [3])])
def test_example_batches_are_a_full_batch_and_the_smaller_last_one(n, batch, drop_last, sizes):
    """What a dry run (Trainer.compile_ahead) needs: every batch size an epoch makes, each made as the epoch
    makes it, without moving the loader."""
    loader = DataLoader(make_data(n), batch_size=batch, drop_last=drop_last, shuffle=True, seed=0)
    examples = loader.example_batches()
    assert [len(x) for x, _ in examples] == sizes
    epoch_sizes = sorted({len(x) for x, _ in loader}, reverse=True)
    assert [len(x) for x, _ in examples] == epoch_sizes
    np.testing.assert_array_equal(examples[0][0], loader.example_batch()[0])
    assert all(x.dtype == np.float32 and x.shape[1:] == (1, 28, 28) for x, _ in examples)


def test_normalisation_values():
    images, labels = make_data(7)
    x, y = next(iter(DataLoader((images, labels), batch_size=7)))
    expected = (images[:, None].astype(np.float64) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, labels)
    # extremes: 0 -> -0.4242..., 255 -> 2.8215...
    edge = np.zeros((2, 28, 28), np.uint8)
    edge[1] = 255
    x, _ = next(iter(DataLoader((edge, np.zeros(2, np.int64)), batch_size=2)))
    np.testing.assert_allclose([x[0].max(), x[1].min()], [-0.1307 / 0.3081, (1 - 0.1307) / 0.3081], rtol=1e-6)


def test_custom_and_no_normalisation_and_float_input():
    images, labels = make_data(4)
    x, _ = next(iter(DataLoader((images, labels), batch_size=4, normalize=None)))
    np.testing.assert_allclose(x[:, 0], images / 255, rtol=1e-6)
    x, _ = next(iter(DataLoader((images, labels), batch_size=4, normalize=(0.5, 0.5))))
    np.testing.assert_allclose(x[:, 0], (images / 255 - 0.5) / 0.5, rtol=1e-5, atol=1e-6)
    # float input is taken as already in [0, 1]: not divided by 255 again
    f = (images / 255).astype(np.float64)
    x, _ = next(iter(DataLoader((f, labels), batch_size=4, normalize=None)))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], f, rtol=1e-6)


def test_batches_are_the_float32_formula_bit_for_bit_and_a_transform_keeps_its_arrays():
    """The batch is ((x / 255) - mean) / std in float32, operation by operation, whether it is computed in place or
    not; a transform that hands back an array it keeps (here: the same one every time) finds it unchanged."""
    images, labels = make_data(8)
    mean, std = np.float32(0.1307), np.float32(0.3081)
    x, _ = next(iter(DataLoader((images, labels), batch_size=8)))
    np.testing.assert_array_equal(x, (images[:, None].astype(np.float32) / np.float32(255) - mean) / std)
    kept = np.full((8, 1, 28, 28), 0.5, dtype=np.float32)
    x, _ = next(iter(DataLoader((images, labels), batch_size=8, transform=lambda batch, rng: kept)))
    np.testing.assert_array_equal(x, (kept - mean) / std)
    assert (kept == 0.5).all()
    x, _ = next(iter(DataLoader((images, labels), batch_size=8, normalize=None, transform=lambda batch, rng: kept)))
    np.testing.assert_array_equal(x, kept)


def test_accepts_mnist_like_object_and_nchw():
    images, labels = make_data(6)
    ds = types.SimpleNamespace(data=images, targets=labels)
    x1, y1 = collect(DataLoader(ds, batch_size=4))
    x2, y2 = collect(DataLoader((images[:, None], labels.astype(np.uint8)), batch_size=4))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert y2.dtype == np.int64


@pytest.mark.parametrize("dataset,kwargs,pattern", [
    ((np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.int64)), {}, r"3 images, 4 labels"),
    ((np.zeros((3, 28), np.uint8), np.zeros(3, np.int64)), {}, r"\(N, H, W\) or \(N, C, H, W\), given shape \(3, 28\)"),
    ((np.zeros((3, 2, 2), np.int64), np.zeros(3, np.int64)), {}, r"uint8 \(0..255\) or float \(0..1\), given int64"),
    ((np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.float32)), {}, r"labels expected integer"),
    ((np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.int64)), {"batch_size": 0}, r"batch_size must be >= 1, given 0"),
    ((np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.int64)), {"seed": -1}, r"non-negative int, given -1"),
    ((np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.int64)), {"normalize": (0.1, 0)}, r"std must be > 0"),
])
def test_bad_arguments(dataset, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DataLoader(dataset, **kwargs)


def test_not_a_dataset():
    with pytest.raises(TypeError, match=r"\.data and \.targets"):
        DataLoader(np.zeros((3, 28, 28)))


# ---------------------------------------------------------------------------- shuffling

def labels_as_ids(n):
    """Images whose first pixel is their index, so batches reveal which samples they hold."""
    images = np.zeros((n, 2, 2), np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images, np.arange(n, dtype=np.int64)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), bs=st.integers(1, 17), shuffle=st.booleans(), seed=st.integers(0, 2**64))
def test_every_sample_exactly_once_per_epoch(n, bs, shuffle, seed):
    loader = DataLoader(labels_as_ids(n), batch_size=bs, shuffle=shuffle, seed=seed, normalize=None)
    for _ in range(2):
        x, y = collect(loader)
        assert sorted(y.tolist()) == list(range(n))
        np.testing.assert_array_equal(np.rint(x[:, 0, 0, 0] * 255), y)  # images travel with labels
        if not shuffle:
            np.testing.assert_array_equal(y, np.arange(n))


def test_drop_last_with_shuffle_sees_distinct_samples():
    loader = DataLoader(labels_as_ids(23), batch_size=5, shuffle=True, drop_last=True, seed=3)
    _, y = collect(loader)
    assert len(y) == 20 and len(set(y.tolist())) == 20


def test_shuffle_is_deterministic_and_differs_per_epoch():
    data = labels_as_ids(50)
    a = DataLoader(data, batch_size=8, shuffle=True, seed=123)
    b = DataLoader(data, batch_size=8, shuffle=True, seed=123)
    c = DataLoader(data, batch_size=8, shuffle=True, seed=124)
    ea = [collect(a)[1] for _ in range(3)]
    eb = [collect(b)[1] for _ in range(3)]
    for ya, yb in zip(ea, eb):
        np.testing.assert_array_equal(ya, yb)          # same seed: same orders
    assert not np.array_equal(ea[0], ea[1])            # each epoch reshuffles
    assert not np.array_equal(ea[0], np.arange(50))    # it did shuffle
    assert not np.array_equal(ea[0], collect(c)[1])    # another seed, another order
    assert a.epoch == 3
    np.testing.assert_array_equal(a.order(1), ea[1])   # order(e) predicts epoch e


def test_unseeded_loader_records_its_seed():
    a = DataLoader(labels_as_ids(30), batch_size=4, shuffle=True)
    b = DataLoader(labels_as_ids(30), batch_size=4, shuffle=True, seed=a.seed)
    np.testing.assert_array_equal(collect(a)[1], collect(b)[1])
    assert isinstance(a.seed, int) and a.seed >= 0


def test_break_starts_a_new_epoch():
    loader = DataLoader(labels_as_ids(30), batch_size=4, shuffle=True, seed=5)
    for _ in loader:
        break
    assert loader.epoch == 0
    _, y = collect(loader)  # not the rest of epoch 0 but all of epoch 1
    np.testing.assert_array_equal(y, loader.order(1))
    assert loader.epoch == 2


# ---------------------------------------------------------------------------- resume

def test_state_round_trip_mid_epoch_is_exact():
    data = make_data(41)
    kw = dict(batch_size=6, shuffle=True, seed=99, transform=random_shift(2))
    ref = DataLoader(data, **kw)
    reference = [list(ref) for _ in range(3)]          # 3 epochs, uninterrupted

    run = DataLoader(data, **kw)
    list(run)                                          # epoch 0
    it = iter(run)
    for _ in range(3):                                 # 3 batches into epoch 1 ...
        next(it)
    state = run.state_dict()
    assert state == {"seed": 99, "epoch": 1, "batch": 3, "batch_size": 6, "num_samples": 41}
    state = json.loads(json.dumps(state))              # plain data: survives JSON, no pickle

    fresh = DataLoader(data, **kw)
    fresh.load_state_dict(state)
    rest_of_1 = list(fresh)
    epoch_2 = list(fresh)
    for (x, y), (rx, ry) in zip(rest_of_1 + epoch_2, reference[1][3:] + reference[2]):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)
    assert len(rest_of_1) == len(ref) - 3 and fresh.epoch == 3


def test_state_at_epoch_boundaries():
    loader = DataLoader(labels_as_ids(10), batch_size=5, shuffle=True, seed=0)
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 0
    it = iter(loader)
    next(it), next(it)              # every batch handed out, generator not yet exhausted
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)
    list(it)
    assert (loader.epoch, loader.state_dict()["batch"]) == (1, 0)
    loader.set_epoch(7)
    np.testing.assert_array_equal(collect(loader)[1], loader.order(7))


def test_load_state_validates():
    loader = DataLoader(labels_as_ids(10), batch_size=5)
    good = loader.state_dict()
    with pytest.raises(ValueError, match=r"saved with batch_size=4, this loader has batch_size=5"):
        loader.load_state_dict(dict(good, batch_size=4))
    with pytest.raises(ValueError, match=r"saved with num_samples=11, this loader has num_samples=10"):
        loader.load_state_dict(dict(good, num_samples=11))
    with pytest.raises(ValueError, match=r"0 <= batch <= 2, given epoch=0, batch=3"):
        loader.load_state_dict(dict(good, batch=3))


# ---------------------------------------------------------------------------- augmentation

def test_random_shift_moves_pixels_and_fills_with_zero():
    x = np.zeros((200, 1, 7, 7), np.float32)
    x[:, 0, 3, 3] = 1.0
    out = random_shift(2)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.all(out.sum(axis=(1, 2, 3)) == 1)                # the dot moved, never lost
    ys, xs = np.nonzero(out[:, 0])[1:]
    assert set(ys.tolist()) == set(range(1, 6)) and set(xs.tolist()) == set(range(1, 6))
    # a full image shifted loses an edge to zeros, at most max_shift rows/columns
    full = np.ones((50, 1, 7, 7), np.float32)
    s = random_shift(2)(full, np.random.default_rng(1))
    assert s.min() == 0 and np.all(s.sum(axis=(1, 2, 3)) >= 5 * 5)
    np.testing.assert_array_equal(random_shift(0)(full, np.random.default_rng(2)), full)


def test_transform_runs_before_normalisation_and_is_seeded():
    data = make_data(16)
    seen = []

    def spy(x, rng):
        seen.append((x.min(), x.max()))
        return x

    list(DataLoader(data, batch_size=8, transform=spy))
    assert all(0 <= lo and hi <= 1 for lo, hi in seen)
    a = collect(DataLoader(data, batch_size=8, transform=random_shift(), seed=4))[0]
    b = collect(DataLoader(data, batch_size=8, transform=random_shift(), seed=4))[0]
    c = collect(DataLoader(data, batch_size=8, transform=random_shift(), seed=5))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match=r"transform must return an array of shape \(8, 1, 28, 28\)"):
        list(DataLoader(data, batch_size=8, transform=lambda x, rng: x[:, 0]))


def test_augmentation_differs_between_batches_and_epochs():
    one = make_data(1)[0]
    images = np.repeat(one, 8, axis=0)            # 8 copies of the same image
    loader = DataLoader((images, np.zeros(8, np.int64)), batch_size=4, transform=random_shift(2), seed=0)
    (b0, _), (b1, _) = list(loader)
    (c0, _), _ = list(loader)
    assert not np.array_equal(b0, b1)             # batch 1 is not a copy of batch 0's shifts
    assert not np.array_equal(b0, c0)             # nor epoch 1 a copy of epoch 0's


@pytest.mark.parametrize("m", [27, 28, 29, 40])
def test_random_shift_larger_than_the_image_blanks_instead_of_failing(m):
    """--augment 29 used to end in 'shape mismatch' from the slicing; a shift past the frame is background."""
    x = np.ones((64, 1, 28, 28), dtype=np.float32)
    rng = np.random.default_rng(0)
    out = random_shift(m)(x, rng)
    d = np.random.default_rng(0).integers(-m, m + 1, size=(64, 2))
    gone = (np.abs(d) >= 28).any(axis=1)
    assert out.shape == x.shape
    assert (out[gone] == 0).all()
    kept = ~gone
    np.testing.assert_array_equal(out[kept].sum(axis=(1, 2, 3)),
                                  ((28 - np.abs(d[kept, 0])) * (28 - np.abs(d[kept, 1]))).astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 3), seed=st.integers(0, 99))
def test_random_shift_is_each_samples_own_shift_with_zero_fill(m, h, w, c, seed):
    """Against a sample-by-sample reference: the same draws, each image moved by its (dy, dx), zeros where nothing
    moved in, shifts of the image's size or more (up to many times it) blank; the input is left as it was."""
    x = np.random.default_rng(seed).random((5, c, h, w)).astype(np.float32)
    before = x.copy()
    out = random_shift(m)(x, np.random.default_rng(seed))
    d = np.random.default_rng(seed).integers(-m, m + 1, size=(5, 2))
    expected = np.zeros_like(x)
    for b, (dy, dx) in enumerate(d):
        for i in range(h):
            for j in range(w):
                if 0 <= i - dy < h and 0 <= j - dx < w:
                    expected[b, :, i, j] = x[b, :, i - dy, j - dx]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("shape", [(4, 1, 1, 4096), (16, 3, 2, 1000), (8, 1, 28, 28)])
def test_random_shift_needs_a_few_batches_of_memory_whatever_the_shift(shape):
    """Its zero frame is at most the image's own size on each side, per axis: a huge shift of a wide, short image
    must not make a frame as tall as it is wide."""
    import tracemalloc
    x = np.ones(shape, dtype=np.float32)
    tracemalloc.start()
    try:
        out = random_shift(10**6)(x, np.random.default_rng(1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 11 * x.nbytes + (1 << 16)
    assert not out.any()  # every shift is past the image
