"""tinyconv.kernels.blas: OpenBLAS on one thread in nested and concurrent sections, the thread count restored;
numpy's OpenBLAS found and driven through threadpoolctl. (The products themselves: test_workers.py.)"""
import threading
from types import SimpleNamespace

import pytest
from threadpoolctl import threadpool_info

from tinyconv.kernels import blas


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


def test_sections_call_openblas_own_thread_count_functions():
    """A section sets numpy's OpenBLAS through its own C functions (threadpoolctl's calls cost several times more,
    and a training step opens dozens of sections); what they set is what threadpoolctl reads."""
    lib = blas.openblas()
    if lib is None or lib.threading_layer == "openmp":
        pytest.skip("numpy's BLAS is not a pthreads OpenBLAS")
    get, put = blas._thread_count_functions(lib)
    assert not hasattr(get, "__self__") and not hasattr(put, "__self__")  # not the controller's methods
    before = lib.get_num_threads()
    assert get() == before
    try:
        put(1)
        assert lib.get_num_threads() == 1
    finally:
        put(before)
    assert lib.get_num_threads() == before


def test_a_controller_without_the_lookup_is_driven_through_its_methods(fake_blas):
    get, put = blas._thread_count_functions(fake_blas)
    assert get() == 4
    put(2)
    assert fake_blas.threads == 2 and fake_blas.calls == [2]
