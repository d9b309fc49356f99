"""Optimizers and schedules against hand-written float64 formulas (PyTorch's algorithm boxes)."""
import math

import numpy as np
import pytest

import tinyconv.optim as optim
from tinyconv.nn import Parameter
from tinyconv.optim import lr_scheduler
from tinyconv.tensor import Tensor

P0 = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -0.25]])
# A fixed gradient per step, so the expected trajectory can be written out by hand.
GRADS = [
    np.array([[0.1, -0.2, 0.3], [0.0, 1.0, -0.5]]),
    np.array([[-0.4, 0.25, 0.3], [2.0, -1.0, 0.05]]),
    np.array([[0.2, 0.2, -0.1], [-0.3, 0.7, 0.9]]),
]


def run(opt_cls, steps=3, dtype=np.float32, **kw):
    p = Parameter(P0.astype(dtype))
    opt = opt_cls([p], **kw)
    for g in GRADS[:steps]:
        p.grad = Tensor(g.astype(dtype))
        opt.step()
        assert p.dtype == dtype  # no float64 promotion
    return p.numpy().astype(np.float64), opt


def sgd_reference(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, b = P0.copy(), None
    for g in GRADS:
        g = g + weight_decay * p
        if momentum:
            b = g.copy() if b is None else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
    return p


def adam_reference(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False):
    b1, b2 = betas
    p, m, v, vmax = P0.copy(), np.zeros_like(P0), np.zeros_like(P0), np.zeros_like(P0)
    for t, g in enumerate(GRADS, start=1):
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("kw", [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.5),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.05, weight_decay=0.1),
    dict(lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True),
])
def test_sgd_matches_formula(kw):
    got, _ = run(optim.SGD, **kw)
    np.testing.assert_allclose(got, sgd_reference(**kw), rtol=1e-6, atol=1e-6)


def test_sgd_first_step_by_hand():
    # Step 1 with momentum: the buffer is the gradient itself (no dampening applied), so p - lr*g.
    got, opt = run(optim.SGD, steps=1, lr=0.1, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(got, P0 - 0.1 * GRADS[0], rtol=1e-6)
    # Step 2 by hand: b = 0.9*g1 + 0.5*g2.
    got, _ = run(optim.SGD, steps=2, lr=0.1, momentum=0.9, dampening=0.5)
    b = 0.9 * GRADS[0] + 0.5 * GRADS[1]
    np.testing.assert_allclose(got, P0 - 0.1 * GRADS[0] - 0.1 * b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kw", [
    dict(lr=0.1),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, amsgrad=True),
])
def test_adam_matches_formula(kw):
    got, opt = run(optim.Adam, **kw)
    np.testing.assert_allclose(got, adam_reference(**kw), rtol=1e-5, atol=1e-6)
    assert opt.state_dict()["state"][0]["step"] == 3


def test_adam_first_step_is_lr_times_sign():
    # At t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g| + eps) ≈ lr·sign(g).
    got, _ = run(optim.Adam, steps=1, dtype=np.float64, lr=0.1)
    g = GRADS[0]
    np.testing.assert_allclose(got, P0 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_matches_formula(wd):
    got, _ = run(optim.AdamW, lr=0.1, weight_decay=wd)
    np.testing.assert_allclose(got, adam_reference(lr=0.1, weight_decay=wd, decoupled=True), rtol=1e-5, atol=1e-6)


def test_adamw_default_decay_differs_from_adam_l2():
    assert optim.AdamW([Parameter(P0)]).defaults["weight_decay"] == 1e-2
    a, _ = run(optim.AdamW, lr=0.1, weight_decay=0.1)
    b, _ = run(optim.Adam, lr=0.1, weight_decay=0.1)
    assert not np.allclose(a, b)


def test_float64_params_stay_float64():
    got, opt = run(optim.Adam, dtype=np.float64, lr=0.1)
    np.testing.assert_allclose(got, adam_reference(lr=0.1), rtol=1e-12)
    assert opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].dtype == np.float64


def test_params_without_grad_are_skipped_and_grad_untouched():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    opt = optim.SGD([a, b], lr=1.0, weight_decay=0.5, momentum=0.9)
    g = Tensor(np.array([1.0, 2.0], np.float32))
    a.grad = g
    opt.step()
    np.testing.assert_allclose(a.numpy(), 1 - (np.array([1.0, 2.0]) + 0.5))
    np.testing.assert_array_equal(b.numpy(), 1)
    np.testing.assert_array_equal(g.numpy(), [1.0, 2.0])  # weight decay did not write into the gradient
    assert b not in opt.state


def test_zero_grad():
    p = Parameter(np.ones(3, np.float32))
    opt = optim.SGD([p], lr=0.1)
    p.grad = Tensor(np.ones(3, np.float32))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), 0)
    opt.zero_grad()
    assert p.grad is None


def test_param_groups_override_defaults():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9
    a.grad = b.grad = Tensor(np.ones(2, np.float32))
    opt.step()
    np.testing.assert_allclose(a.numpy(), 0.9)
    np.testing.assert_allclose(b.numpy(), 0.5)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: optim.Adam(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda p: optim.AdamW(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: optim.SGD(p + p, lr=0.1), "more than one parameter group"),
])
def test_validation_errors(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make([Parameter(np.ones(2, np.float32))])


def test_single_tensor_is_rejected():
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(Parameter(np.ones(2, np.float32)), lr=0.1)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: optim.Adam(ps, lr=0.05, amsgrad=True),
    lambda ps: optim.AdamW(ps, lr=0.05),
])
def test_state_dict_round_trip_continues_identically(make, tmp_path):
    import tinyconv as tc

    def params():
        return [Parameter(P0.astype(np.float32)), Parameter(np.arange(3, dtype=np.float32))]

    def grads(i):
        return [GRADS[i % 3].astype(np.float32), np.full(3, 0.1 * (i + 1), np.float32)]

    ps = params()
    opt = make(ps)
    for i in range(5):
        for p, g in zip(ps, grads(i)):
            p.grad = Tensor(g)
        opt.step()
        if i == 1:
            tc.save({"opt": opt.state_dict(), "params": [p.numpy().copy() for p in ps]}, tmp_path / "o.npz")
    # Resume from the file into fresh objects and redo steps 2..4.
    saved = tc.load(tmp_path / "o.npz")
    ps2 = params()
    for p, arr in zip(ps2, saved["params"]):
        p.numpy()[...] = arr
    opt2 = make(ps2)
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0].keys() == opt.param_groups[0].keys()
    for i in range(2, 5):
        for p, g in zip(ps2, grads(i)):
            p.grad = Tensor(g)
        opt2.step()
    for a, b in zip(ps, ps2):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # bit-identical


def test_state_dict_layout_is_pytorchs():
    ps = [Parameter(np.ones(2, np.float32)), Parameter(np.ones(3, np.float32))]
    opt = optim.Adam([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.1}])
    for p in ps:
        p.grad = Tensor(np.ones_like(p.numpy()))
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0] and sd["param_groups"][1]["params"] == [1]
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == [0.9, 0.999]
    assert set(sd["state"]) == {0, 1} and set(sd["state"][1]) == {"step", "exp_avg", "exp_avg_sq"}
    # A snapshot: later steps do not change it.
    before = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)


def test_load_state_dict_errors_leave_optimizer_unchanged():
    p = Parameter(np.ones(2, np.float32))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = Tensor(np.ones(2, np.float32))
    opt.step()
    good = opt.state_dict()
    bad = {"state": {0: {"momentum_buffer": np.zeros(5, np.float32)}}, "param_groups": good["param_groups"]}
    bad["param_groups"] = [dict(good["param_groups"][0], lr=123.0)]
    with pytest.raises(ValueError, match=r"momentum_buffer' of parameter 0 has shape \(5,\)"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1
    for kind in (np.complex64, "U3"):  # not real numbers: refused, where a cast would drop the imaginary part
        bad = {"state": {0: {"momentum_buffer": np.zeros(2, kind)}}, "param_groups": good["param_groups"]}
        with pytest.raises(ValueError, match=r"momentum_buffer' of parameter 0 holds .* values, expected real"):
            opt.load_state_dict(bad)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["momentum_buffer"],
                                  good["state"][0]["momentum_buffer"])
    with pytest.raises(ValueError, match="2 parameter group"):
        opt.load_state_dict({"state": {}, "param_groups": good["param_groups"] * 2})
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"lr": 1})


# ----------------------------------------------------------------------------------------------- schedulers
def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


def make_opt(lr=1.0, cls=optim.SGD, **kw):
    return cls([Parameter(np.ones(1, np.float32))], lr=lr, **kw)


def test_step_lr():
    sched = lr_scheduler.StepLR(make_opt(0.1), step_size=2, gamma=0.5)
    np.testing.assert_allclose(lrs(sched, 6), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert sched.optimizer.param_groups[0]["lr"] == sched.get_last_lr()[0]


def test_multistep_and_constant_lr():
    np.testing.assert_allclose(lrs(lr_scheduler.MultiStepLR(make_opt(1.0), [1, 3], 0.1), 5),
                               [1, 0.1, 0.1, 0.01, 0.01])
    np.testing.assert_allclose(lrs(lr_scheduler.ConstantLR(make_opt(1.0), 0.5, 2), 4), [0.5, 0.5, 1, 1])


def test_cosine_annealing_lr():
    sched = lr_scheduler.CosineAnnealingLR(make_opt(0.1), T_max=4, eta_min=0.01)
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(lrs(sched, 5), expected, rtol=1e-12)
    assert lrs(lr_scheduler.CosineAnnealingLR(make_opt(1.0), T_max=2), 3)[2] == pytest.approx(0.0, abs=1e-15)


def test_one_cycle_lr_values_and_momentum():
    opt = make_opt(cls=optim.Adam)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    got = lrs(sched, 10)
    # PyTorch's values: warm-up over pct_start·10 - 1 = 2 steps from 0.1/25, cosine down to 0.1/25/1e4.
    assert got[0] == pytest.approx(0.004) and got[1] == pytest.approx(0.052) and got[2] == pytest.approx(0.1)
    assert got[-1] == pytest.approx(4e-7)
    assert got[5] == pytest.approx(4e-7 + (0.1 - 4e-7) / 2 * (math.cos(math.pi * 3 / 7) + 1))
    sched2 = lr_scheduler.OneCycleLR(make_opt(cls=optim.Adam), max_lr=0.1, total_steps=10)
    assert sched2.optimizer.param_groups[0]["betas"][0] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        sched.step()


def test_scheduler_state_dict_round_trip():
    opt = make_opt(0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    lrs(sched, 3)
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert state["last_epoch"] == 3 and "optimizer" not in state
    opt2 = make_opt(0.1)
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    assert lrs(sched2, 4) == lrs(sched, 4)
    with pytest.raises(ValueError, match="unexpected key"):
        sched2.load_state_dict({"bogus": 1})
