"""Importing tinyconv never fails on an environment value: a bad one warns (a RuntimeWarning naming the variable,
its value and the valid ones) and the default is used."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyconv.environment import env_switch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, want", [(None, True), ("", True), ("  ", True), ("1", True), ("ON", True),
                                         (" yes ", True), ("0", False), ("Off", False), ("false", False),
                                         ("no", False)])
def test_switch_values(monkeypatch, value, want):
    if value is None:
        monkeypatch.delenv("TINYCONV_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("TINYCONV_TEST_SWITCH", value)
    assert env_switch("TINYCONV_TEST_SWITCH", default=True) is want
    assert env_switch("TINYCONV_TEST_SWITCH", default=False) is (want if value and value.strip() else False)


def test_a_bad_switch_warns_and_keeps_the_default(monkeypatch):
    monkeypatch.setenv("TINYCONV_TEST_SWITCH", "of")
    with pytest.warns(RuntimeWarning, match=r"TINYCONV_TEST_SWITCH='of' is not valid; valid values: '1', .*'off'.*"
                                            r"using the default \(off\)"):
        assert env_switch("TINYCONV_TEST_SWITCH", default=False) is False
    monkeypatch.setenv("TINYCONV_TEST_SWITCH", "default")  # a value only some switches know
    with pytest.warns(RuntimeWarning):
        assert env_switch("TINYCONV_TEST_SWITCH", default=True) is True
    assert env_switch("TINYCONV_TEST_SWITCH", default=True, off=("default",)) is False


def test_import_tinyconv_with_every_variable_wrong():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYCONV_", "MALLOC_", "GLIBC_TUNABLES"))}
    env.update(TINYCONV_KERNEL="nmba", TINYCONV_POOL_KERNEL="numpi", TINYCONV_FUSE="of", TINYCONV_MALLOC="nope",
               NUMBA_DISABLE_JIT="1", PYTHONPATH=str(ROOT))
    code = ("import tinyconv as tc; from tinyconv import nn; "
            "print(tc.get_default_kernel(), tc.get_default_pool_kernel(), nn.fusion_enabled(), "
            "tc.memory.malloc_tuning()['reason'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(ROOT),
                       timeout=300)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[:3] == ["auto", "auto", "True"]
    for var, value in (("TINYCONV_KERNEL", "nmba"), ("TINYCONV_POOL_KERNEL", "numpi"), ("TINYCONV_FUSE", "of"),
                       ("TINYCONV_MALLOC", "nope")):
        assert f"RuntimeWarning: environment variable {var}={value!r} is not" in r.stderr, var
    if sys.platform.startswith("linux"):
        assert "set at import" in r.stdout or "not glibc" in r.stdout
