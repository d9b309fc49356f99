"""tinyconv.kernels.blas: small products on one OpenBLAS thread, the thread count restored, the result unchanged;
numpy's OpenBLAS found and driven through threadpoolctl."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from tinyconv.kernels import blas


class RecordingBLAS:
    """Stands in for numpy's OpenBLAS: records every thread-count change and what was set during np.matmul."""

    def __init__(self, threads):
        self.threads = threads
        self.calls = []

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.calls.append(n)
        self.threads = n


@pytest.fixture
def fake_blas(monkeypatch):
    fake = RecordingBLAS(threads=4)
    monkeypatch.setattr(blas, "_openblas", fake)
    return fake


def test_small_product_runs_on_one_thread_and_restores(fake_blas, monkeypatch):
    seen = []
    real = np.matmul
    monkeypatch.setattr(blas.np, "matmul", lambda a, b, out=None: (seen.append(fake_blas.threads),
                                                                     real(a, b, out=out))[1])
    a, b = np.ones((128, 400), np.float32), np.ones((400, 120), np.float32)
    out = blas.matmul(a, b)
    assert seen == [1]                      # the product itself ran with one thread
    assert fake_blas.calls == [1, 4]        # and the user's count came back
    assert fake_blas.threads == 4
    np.testing.assert_array_equal(out, np.full((128, 120), 400, np.float32))


def test_large_product_keeps_every_thread(fake_blas, monkeypatch):
    monkeypatch.setattr(blas, "SMALL_MATMUL_MACS", 1000)
    blas.matmul(np.ones((10, 10)), np.ones((10, 11)))        # 1100 multiply-adds: not small
    assert fake_blas.calls == []
    blas.matmul(np.ones((3, 10, 10)), np.ones((10, 3)))      # batch counts: 900 < 1000
    assert fake_blas.calls == [1, 4]


def test_turned_off_and_single_thread_untouched(fake_blas, monkeypatch):
    monkeypatch.setattr(blas, "SMALL_MATMUL_MACS", 0)
    blas.matmul(np.ones((2, 2)), np.ones((2, 2)))
    assert fake_blas.calls == []
    monkeypatch.setattr(blas, "SMALL_MATMUL_MACS", 1 << 24)
    fake_blas.threads = 1
    blas.matmul(np.ones((2, 2)), np.ones((2, 2)))
    assert fake_blas.calls == []


def test_thread_count_restored_when_matmul_raises(fake_blas):
    with pytest.raises(ValueError):
        blas.matmul(np.ones((2, 3)), np.ones((4, 2)))
    assert fake_blas.threads == 4 and fake_blas.calls == [1, 4]


def test_concurrent_small_products_leave_the_count_as_it_was(fake_blas):
    a = np.ones((8, 8))
    errors = []

    def work():
        try:
            for _ in range(200):
                np.testing.assert_array_equal(blas.matmul(a, a), a * 8)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and fake_blas.threads == 4


@pytest.mark.parametrize("shapes", [((5,), (5,)), ((5,), (5, 3)), ((2, 4, 5), (5, 3)), ((4, 5), (2, 5, 3)),
                                    ((0, 5), (5, 3))])
def test_same_result_as_numpy(shapes):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s) for s in shapes)
    np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))


def test_real_openblas_count_unchanged():
    """With numpy's own OpenBLAS (when this process has one), the thread count is the same after a product."""
    lib = blas.openblas()
    if lib is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS")
    before = lib.get_num_threads()
    blas.matmul(np.ones((16, 16)), np.ones((16, 16)))
    assert lib.get_num_threads() == before


def test_single_thread_sections_nest_and_restore_once(fake_blas):
    with blas.single_thread():
        assert fake_blas.threads == 1
        with blas.single_thread():
            assert fake_blas.threads == 1
        assert fake_blas.threads == 1           # the outer section is still open
    assert fake_blas.threads == 4 and fake_blas.calls == [1, 4]


def test_single_thread_restores_when_the_block_raises(fake_blas):
    with pytest.raises(RuntimeError), blas.single_thread():
        raise RuntimeError("boom")
    assert fake_blas.threads == 4


# ----------------------------------------------------------------------------- threadpoolctl

class FakeController:
    """Stands in for threadpoolctl.ThreadpoolController: select() filters its libraries by internal_api."""

    def __init__(self, libs):
        self.lib_controllers = libs

    def select(self, internal_api):
        return FakeController([lib for lib in self.lib_controllers if lib.internal_api == internal_api])


def _lib(api, path):
    return SimpleNamespace(internal_api=api, filepath=path)


def test_numpy_openblas_is_chosen_among_the_pools():
    mkl = _lib("mkl", "/x/libmkl_rt.so")
    torch_blas = _lib("openblas", "/site-packages/torch/lib/libopenblas.so")  # PyTorch's own, not numpy's
    numpy_blas = _lib("openblas", "/site-packages/numpy.libs/libscipy_openblas64_.so")
    assert blas._find_openblas(FakeController([mkl, torch_blas, numpy_blas])) is numpy_blas
    assert blas._find_openblas(FakeController([mkl, torch_blas])) is None
    assert blas._find_openblas(FakeController([])) is None


@pytest.mark.parametrize("core, wide", [("SkylakeX", True), ("Cooperlake", True), ("SAPPHIRERAPIDS", True),
                                        ("Haswell", False), ("Zen", False), ("Sandybridge", False)])
def test_wide_kernels_by_openblas_core(monkeypatch, core, wide):
    monkeypatch.setattr(blas, "_openblas", SimpleNamespace(architecture=core))
    assert blas.wide_kernels() is wide
    monkeypatch.setattr(blas, "_openblas", None)  # numpy's BLAS not an OpenBLAS
    assert blas.wide_kernels() is False


def test_wide_kernels_follow_openblas_coretype():
    """OPENBLAS_CORETYPE=Haswell (the setting this project's machines run with) gives AVX2 kernels, in a fresh
    process; OpenBLAS's own pick otherwise, whatever it is."""
    import os
    import subprocess
    import sys

    code = "from tinyconv.kernels import blas; print(blas.openblas() is not None, blas.wide_kernels())"
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    found, wide = r.stdout.split()
    if found == "False":
        pytest.skip("numpy's BLAS is not an OpenBLAS")
    assert wide == "False"


def test_the_controller_is_threadpoolctls_and_built_once():
    lib = blas.openblas()
    numpy_pools = [i for i in threadpool_info() if i["internal_api"] == "openblas" and "/torch/" not in i["filepath"]]
    if not numpy_pools:
        assert lib is None
        pytest.skip("numpy's BLAS is not an OpenBLAS")
    assert lib.filepath in {i["filepath"] for i in numpy_pools}
    assert blas.openblas() is lib  # cached: not looked up again


def test_a_section_on_another_thread_takes_effect():
    """threadpoolctl lets only the first Python thread that sets OpenBLAS's count change it; a section opened on
    another thread (a loader thread, tinyconv's workers' caller) must still drop the count to one and restore it."""
    lib = blas.openblas()
    if lib is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS")
    before = lib.get_num_threads()
    if before < 2:
        pytest.skip("OpenBLAS runs one thread here: nothing to drop")
    with blas.single_thread():                 # this thread takes threadpoolctl's control
        assert lib.get_num_threads() == 1
    assert lib.get_num_threads() == before
    seen = []

    def other():
        with blas.single_thread():
            seen.append(lib.get_num_threads())
        seen.append(lib.get_num_threads())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [1, before]
    assert lib.get_num_threads() == before
