"""Peer frameworks' LeNet training step (JAX, Chainer, tinygrad): bench_lenet.py's optional peer rows.

    /path/to/venv-jax/bin/python benchmarks/peer_lenet.py --framework jax --json out.json [--synthetic]

Run by ``bench_lenet.py`` when ``--jax-python`` / ``--chainer-python`` / ``--tinygrad-python`` (or
``$TINYCONV_BENCH_JAX_PYTHON`` / ``..._CHAINER_PYTHON`` / ``..._TINYGRAD_PYTHON``) names an interpreter with that
framework; each in its own fresh process, which imports neither tinyconv, numba nor torch. The step is the one
``torch_lenet.py --step-worker`` times: the same NumPy batches (``torch_lenet.batches``), the same initial weights
(``--init-from``, PyTorch's key names and layouts), LeNet (modern), cross-entropy, Adam lr 1e-3 (PyTorch's
formula, eps 1e-8). Step level only. How each framework runs it:

* ``jax``: the whole step (forward, ``value_and_grad``, Adam) as one ``jax.jit`` function; the loss is fetched
  each step, which waits for it.
* ``chainer``: ``chainer.links`` / ``chainer.functions`` and ``chainer.optimizers.Adam``, define-by-run.
* ``tinygrad``: ``tinygrad.nn`` layers and ``nn.optim.Adam`` under ``TinyJit`` with training on, on its default
  device (the CPU device compiles with clang).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lenet import batches, load_mnist, minflt, peak_rss_mb, synthetic  # noqa: E402  (NumPy only)

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


def load_init(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: np.array(f[k], dtype=np.float32) for k in f.files}


# ------------------------------------------------------------------------------------------------- JAX
def jax_step(init, lr):
    import jax
    import jax.numpy as jnp

    params = {k: jnp.asarray(v) for k, v in init.items()}
    dn = ("NCHW", "OIHW", "NCHW")

    def conv(x, w, b, pad):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=dn)
        return y + b[None, :, None, None]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def forward(p, x):
        y = pool(jax.nn.relu(conv(x, p["conv1.weight"], p["conv1.bias"], 2)))
        y = pool(jax.nn.relu(conv(y, p["conv2.weight"], p["conv2.bias"], 0)))
        y = y.reshape(y.shape[0], -1)
        y = jax.nn.relu(y @ p["fc1.weight"].T + p["fc1.bias"])
        y = jax.nn.relu(y @ p["fc2.weight"].T + p["fc2.bias"])
        return y @ p["fc3.weight"].T + p["fc3.bias"]

    def loss_fn(p, x, y):
        logp = jax.nn.log_softmax(forward(p, x))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def step(p, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        m = jax.tree_util.tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
        v = jax.tree_util.tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree_util.tree_map(lambda p_, m_, v_: p_ - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + eps), p, m, v)
        return p, m, v, loss

    state = {"p": params, "m": jax.tree_util.tree_map(jnp.zeros_like, params),
             "v": jax.tree_util.tree_map(jnp.zeros_like, params), "t": 0}

    def run(xb, yb):
        state["t"] += 1
        state["p"], state["m"], state["v"], loss = step(state["p"], state["m"], state["v"], float(state["t"]),
                                                        jnp.asarray(xb), jnp.asarray(yb.astype(np.int32)))
        return float(loss)

    return run, f"jax {jax.__version__} ({jax.default_backend()})"


# --------------------------------------------------------------------------------------------- Chainer
def chainer_step(init, lr):
    import chainer
    import chainer.functions as F
    import chainer.links as L

    class Net(chainer.Chain):
        def __init__(self):
            super().__init__()
            with self.init_scope():
                self.conv1 = L.Convolution2D(1, 6, 5, pad=2)
                self.conv2 = L.Convolution2D(6, 16, 5)
                self.fc1 = L.Linear(400, 120)
                self.fc2 = L.Linear(120, 84)
                self.fc3 = L.Linear(84, 10)

        def forward(self, x):
            y = F.max_pooling_2d(F.relu(self.conv1(x)), 2, 2)
            y = F.max_pooling_2d(F.relu(self.conv2(y)), 2, 2)
            y = F.relu(self.fc1(y))
            y = F.relu(self.fc2(y))
            return self.fc3(y)

    model = Net()
    for name in LAYERS:
        link = getattr(model, name)
        link.W.array[...] = init[f"{name}.weight"]
        link.b.array[...] = init[f"{name}.bias"]
    opt = chainer.optimizers.Adam(alpha=lr, eps=1e-8)
    opt.setup(model)

    def run(xb, yb):
        loss = F.softmax_cross_entropy(model(xb), yb)
        model.cleargrads()
        loss.backward()
        opt.update()
        return float(loss.array)

    return run, f"chainer {chainer.__version__}"


# -------------------------------------------------------------------------------------------- tinygrad
def tinygrad_step(init, lr):
    import tinygrad
    from tinygrad import Device, Tensor, TinyJit, nn

    try:  # tinygrad >= 0.11: a context variable; before: Tensor.train()
        from tinygrad.helpers import Context

        training = Context(TRAINING=1)
    except ImportError:  # pragma: no cover - older tinygrad
        training = Tensor.train()

    class Net:
        def __init__(self):
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def __call__(self, x):
            y = self.conv1(x).relu().max_pool2d((2, 2), 2)
            y = self.conv2(y).relu().max_pool2d((2, 2), 2)
            y = y.flatten(1)
            y = self.fc1(y).relu()
            y = self.fc2(y).relu()
            return self.fc3(y)

    model = Net()
    for name in LAYERS:
        layer = getattr(model, name)
        layer.weight.assign(Tensor(init[f"{name}.weight"])).realize()
        layer.bias.assign(Tensor(init[f"{name}.bias"])).realize()
    params = nn.state.get_parameters(model)
    opt = nn.optim.Adam(params, lr=lr, eps=1e-8)

    @TinyJit
    @training
    def step(x, y):
        opt.zero_grad()
        loss = model(x).sparse_categorical_crossentropy(y).backward()
        return loss.realize(*opt.schedule_step())  # the loss and the update in one schedule (tinygrad's idiom)

    def run(xb, yb):
        return float(step(Tensor(xb), Tensor(yb.astype(np.int32))).item())

    from importlib.metadata import version

    return run, f"tinygrad {getattr(tinygrad, '__version__', None) or version('tinygrad')} ({Device.DEFAULT})"


BUILDERS = {"jax": jax_step, "chainer": chainer_step, "tinygrad": tinygrad_step}


# -------------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--framework", choices=sorted(BUILDERS), required=True)
    ap.add_argument("--json", metavar="PATH", required=True)
    ap.add_argument("--init-from", required=True, help="initial weights (np.savez, PyTorch's key names)")
    ap.add_argument("--round", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=None, help="recorded only (each peer uses its own default)")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    if args.synthetic:
        images, labels = synthetic(16 * args.batch_size)
        desc = f"synthetic ({len(labels)} random images)"
    else:
        images, labels = load_mnist(args.data, True)
        desc = f"MNIST train ({len(labels)})"
    run, version = BUILDERS[args.framework](load_init(args.init_from), args.lr)

    def stream():
        epoch = 0
        while True:
            yield from batches(images, labels, args.batch_size, 0, epoch, drop_last=True)
            epoch += 1

    data = stream()
    clock = time.perf_counter
    t = clock()
    first_loss = run(*next(data))
    first = clock() - t
    for _ in range(args.warmup - 1):
        run(*next(data))
    f0 = minflt()
    times, last = [], first_loss
    for _ in range(args.round):
        t = clock()
        last = run(*next(data))
        times.append(clock() - t)
    out = dict(variant=args.framework, kernel=args.framework, version=version, threads={"threads": args.threads},
               data=desc, first_step_s=first, step_s=times, splits=[], first_loss=first_loss, last_loss=last,
               minflt_per_step=(minflt() - f0) / max(1, args.round), notes=[], process_peak_rss_mb=peak_rss_mb())
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
    assert "tinyconv" not in sys.modules and "torch" not in sys.modules
