"""DataLoader's prefetch thread: the same batches, order, augmentation and resumable position as building each
batch on demand (prefetch=0), for any depth; errors raised at the batch they belong to; the thread stops when
the caller stops."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from tinyconv.data import DataLoader, random_shift


def _data(n=103, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8), rng.integers(0, 10, size=n)


def _loader(prefetch, **kw):
    kw = {"batch_size": 10, "shuffle": True, "seed": 7, "transform": random_shift(2), **kw}
    return DataLoader(_data(), prefetch=prefetch, **kw)


def _epochs(loader, n):
    return [[(x.copy(), y.copy()) for x, y in loader] for _ in range(n)]


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "tinyconv-DataLoader-prefetch"]


def _assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == xb.dtype == np.float32 and xa.flags.c_contiguous
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_prefetched_batches_are_bit_identical(depth, drop_last):
    reference = _epochs(_loader(0, drop_last=drop_last), 2)
    got = _epochs(_loader(depth, drop_last=drop_last), 2)
    for ref_epoch, got_epoch in zip(reference, got):
        _assert_same(ref_epoch, got_epoch)
    assert not _prefetch_threads()


def test_default_prefetches_one_batch():
    assert DataLoader(_data()).prefetch == 1


@pytest.mark.parametrize("depth", [1, 2])
def test_resume_mid_epoch_matches_the_unprefetched_run(depth):
    reference = _epochs(_loader(0), 2)
    first = _loader(depth)
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    assert state["batch"] == 4  # only what was handed out counts, not what the thread built ahead
    it.close()
    resumed = _loader(depth, seed=123)  # the seed comes from the state
    resumed.load_state_dict(state)
    rest = [(x.copy(), y.copy()) for x, y in resumed] + [(x.copy(), y.copy()) for x, y in resumed]
    _assert_same(rest, reference[0][4:] + reference[1])


def test_stopping_early_stops_the_thread_and_starts_the_next_epoch():
    loader, reference = _loader(1), _epochs(_loader(0), 2)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert not _prefetch_threads()
    _assert_same([(x.copy(), y.copy()) for x, y in loader], reference[1])


def test_transform_error_is_raised_at_its_batch():
    calls = []

    def bad_on_third(x, rng):
        calls.append(1)
        return x[:, :, :4] if len(calls) == 3 else x

    seen = {}
    for depth in (0, 1):
        calls.clear()
        loader = _loader(depth, transform=bad_on_third)
        got = []
        with pytest.raises(ValueError, match="transform must return an array of shape"):
            for x, _ in loader:
                got.append(x)
        seen[depth] = (len(got), loader.state_dict()["batch"])
        assert not _prefetch_threads()
    assert seen[0] == seen[1] == (2, 2)


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_bad_prefetch_is_refused(bad):
    with pytest.raises((ValueError, TypeError), match="prefetch|integer"):
        DataLoader(_data(), prefetch=bad)
