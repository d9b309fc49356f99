"""DataLoader: NumPy batches from image/label arrays, with seeded shuffling that can resume exactly.

Randomness is derived, not carried: the permutation of epoch ``e`` comes from a fresh
``np.random.Generator`` seeded with ``SeedSequence(seed, spawn_key=(e, 0))`` and the
augmentation generator of batch ``b`` of that epoch from ``spawn_key=(e, 1, b)``. So the
whole random state of a loader is three integers, ``(seed, epoch, batch)``: saving them
mid-epoch and loading them into a new loader reproduces the remaining batches bit for bit,
augmentation included, with no pickled Generator objects.

Because a batch is a pure function of ``(seed, epoch, batch)``, it can be made ahead of time: with ``prefetch=1``
(the default) a background thread builds the next batch (indexing, scaling, augmentation, normalisation: NumPy
work that mostly runs without the GIL) while the caller trains on the current one. The batches, their order and
the resumable position are exactly those of ``prefetch=0``, which builds each batch when it is asked for.
"""

from __future__ import annotations

import operator
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["DataLoader", "random_shift", "Transform"]

#: A batch transform: ``(x float32 (B, C, H, W) in [0, 1], rng) -> x`` of the same shape.
Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def random_shift(max_shift: int = 2) -> Transform:
    """A transform that moves each image by a random whole number of pixels, filling with 0.

    Each sample gets its own (dy, dx), drawn uniformly from ``-max_shift..max_shift`` with
    the loader's per-batch generator, so the augmentation is reproducible from the seed.
    Zero fill is background because transforms run before normalisation. A shift as large as the image
    (``max_shift >= H or W``) leaves a blank image; the CLI refuses such values up front.

    Returns:
        ``shift(x, rng)`` mapping float32 (B, C, H, W) to a new array of the same shape.
    """
    m = operator.index(max_shift)
    if m < 0:
        raise ValueError(f"max_shift must be >= 0, given {max_shift}")

    def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = x.shape[-2:]
        d = rng.integers(-m, m + 1, size=(x.shape[0], 2))
        # The batch placed once in a zero frame (py rows, px columns on each side); each sample is then one
        # window of it, a plain copy. Each side is at most the image's own size along its axis, so no input makes
        # the frame more than 9 batches: a shift of the image's size or more leaves frame only, a blank image.
        py, px = min(m, h), min(m, w)
        framed = np.zeros(x.shape[:-2] + (h + 2 * py, w + 2 * px), dtype=x.dtype)
        framed[..., py:py + h, px:px + w] = x
        out = np.empty_like(x)
        dys, dxs = np.clip(d[:, 0], -py, py).tolist(), np.clip(d[:, 1], -px, px).tolist()
        for b, (dy, dx) in enumerate(zip(dys, dxs)):
            out[b] = framed[b, ..., py - dy:py - dy + h, px - dx:px - dx + w]
        return out

    shift.__qualname__ = f"random_shift({m})"
    return shift


def _as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(dataset, (tuple, list)):
        if len(dataset) != 2:
            raise TypeError(f"expected an (images, labels) pair, given a {type(dataset).__name__} "
                            f"of length {len(dataset)}")
        images, labels = dataset
    elif hasattr(dataset, "data") and hasattr(dataset, "targets"):
        images, labels = dataset.data, dataset.targets
    else:
        raise TypeError("expected a dataset with .data and .targets (like MNIST) or an "
                        f"(images, labels) pair of arrays, given {type(dataset).__name__}")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim not in (3, 4):
        raise ValueError(f"images expected (N, H, W) or (N, C, H, W), given shape {images.shape}")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise ValueError(f"images expected uint8 (0..255) or float (0..1), given {images.dtype}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels expected integer (N,), given {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"images and labels differ in length: {len(images)} images, "
                         f"{len(labels)} labels")
    return images, labels


class DataLoader:
    """Iterate over ``(x, y)`` batches of NumPy arrays.

    Args:
        dataset: an object with ``.data`` (images) and ``.targets`` (labels), such as
            ``MNIST``, or a pair ``(images, labels)``. Images are uint8 (N, H, W) or
            (N, C, H, W) with values 0..255, or float with values already in [0, 1]
            (float input is not rescaled, only normalised, and its range is not checked).
            Labels are integers (N,).
        batch_size: samples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: visit samples in a new random order every epoch (else in index order).
        drop_last: leave out the final incomplete batch.
        seed: a non-negative int that fixes every random choice (order and augmentation).
            None draws fresh OS entropy; the value drawn is kept in ``.seed`` and in
            ``state_dict()`` so even an unseeded run can be resumed.
        normalize: ``(mean, std)`` applied after scaling to [0, 1], i.e.
            ``x = (u8 / 255 - mean) / std``; the default is MNIST's. None skips it.
        transform: optional ``transform(x, rng) -> x`` on the float32 (B, C, H, W) batch in
            [0, 1], before normalisation; ``rng`` is a Generator specific to this batch of
            this epoch (see ``random_shift``).
        prefetch: how many batches a background thread builds ahead of the caller (0: none, each batch is
            built in the caller's thread when asked for). Batches are identical either way; only where and
            when ``transform`` runs differs (in that thread, one batch at a time, in order). A transform that
            runs numba parallel code while the model does needs a thread-safe numba threading layer (omp or
            tbb, the usual ones; not workqueue), or ``prefetch=0``.

    Yields:
        x: float32 (B, C, H, W), C = 1 for (N, H, W) input, C-contiguous.
        y: int64 (B,).

    Each ``iter(loader)`` is one epoch and advances the epoch counter when it starts a new
    one. ``state_dict()`` / ``load_state_dict()`` capture ``(seed, epoch, batch)``; after
    loading a mid-epoch state, the next ``iter`` continues that epoch at that batch. An
    iteration abandoned midway (``break``) is not resumed: the next ``iter`` starts the
    following epoch, as in PyTorch. One iteration at a time per loader.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, normalize: tuple[float, float] | None = (0.1307, 0.3081),
                 transform: Transform | None = None, prefetch: int = 1):
        self.images, self.labels = _as_arrays(dataset)
        self.batch_size = operator.index(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, given {batch_size}")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if normalize is not None:
            mean, std = (float(v) for v in normalize)
            if not std > 0:
                raise ValueError(f"normalize std must be > 0, given {std}")
            normalize = (mean, std)
        self.normalize = normalize
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable(x, rng), given {type(transform).__name__}")
        self.transform = transform
        if isinstance(prefetch, bool) or operator.index(prefetch) < 0:
            raise ValueError(f"prefetch must be an int >= 0 (batches built ahead), given {prefetch!r}")
        self.prefetch = operator.index(prefetch)
        self._seed = self._check_seed(np.random.SeedSequence().entropy if seed is None else seed)
        self._epoch = 0          # the epoch in progress, or the next one to start
        self._batch = 0          # batches of self._epoch already handed out
        self._resume = False     # True after load_state_dict() with a mid-epoch position

    # ------------------------------------------------------------------ sizes

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def example_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """A full-size batch (the first ``batch_size`` samples) made as an epoch makes its batches, without
        touching the loader's position or any random state: what a dry run needs for shapes and dtypes."""
        return self._make_batch(np.arange(min(self.batch_size, self.num_samples)), 0, 0)

    def example_batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`example_batch`, and a batch of the size of an epoch's last one where that is smaller (its kernels
        can differ: a small batch may take other loops), made the same way."""
        batches = [self.example_batch()]
        tail = self.num_samples % self.batch_size
        if tail and not self.drop_last and self.num_samples > self.batch_size:
            batches.append(self._make_batch(np.arange(tail), 0, 0))
        return batches

    # ------------------------------------------------------------------ randomness and state

    @staticmethod
    def _check_seed(seed) -> int:
        if isinstance(seed, bool):
            raise TypeError("seed must be a non-negative int, given a bool")
        seed = operator.index(seed)
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, given {seed}")
        return int(seed)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def epoch(self) -> int:
        """The epoch in progress, or the one the next ``iter`` will run."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter`` run epoch ``epoch`` from its first batch."""
        epoch = operator.index(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, given {epoch}")
        self._epoch, self._batch, self._resume = epoch, 0, False

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self._seed, spawn_key=key))

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices in the order epoch ``epoch`` visits them: int64 (N,)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return self._rng(epoch, 0).permutation(self.num_samples)

    def state_dict(self) -> dict[str, int]:
        """Plain ints that let a fresh loader over the same data continue exactly from here.

        ``{"seed", "epoch", "batch", "batch_size", "num_samples"}``; ``batch`` is how many
        batches of ``epoch`` were already handed out (0 = at an epoch boundary).
        """
        epoch, batch = self._epoch, self._batch
        if batch >= len(self):  # every batch handed out: that is the start of the next epoch
            epoch, batch = epoch + 1, 0
        return {"seed": self._seed, "epoch": epoch, "batch": batch,
                "batch_size": self.batch_size, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()``; the next ``iter`` continues from that position."""
        for key, mine in (("batch_size", self.batch_size), ("num_samples", self.num_samples)):
            if key in state and int(state[key]) != mine:
                raise ValueError(f"state was saved with {key}={int(state[key])}, "
                                 f"this loader has {key}={mine}")
        epoch, batch = operator.index(state["epoch"]), operator.index(state["batch"])
        if epoch < 0 or not 0 <= batch <= len(self):
            raise ValueError(f"state position expected epoch >= 0 and 0 <= batch <= {len(self)}, "
                             f"given epoch={epoch}, batch={batch}")
        self._seed = self._check_seed(state["seed"])
        self._epoch, self._batch = epoch, batch
        self._resume = batch > 0

    # ------------------------------------------------------------------ batches

    def _make_batch(self, idx: np.ndarray, epoch: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        x = self.images[idx]  # fancy indexing copies just this batch
        if x.ndim == 3:
            x = x[:, None]
        # the batch's own float32 array, then scaled and normalised in place: the same operations in the same
        # order as out-of-place ones, without a fresh temporary per step (several per batch cost more than the math)
        x = x.astype(np.float32)  # float input: already in [0, 1] by contract
        if self.images.dtype == np.uint8:
            x /= np.float32(255)
        if self.transform is not None:
            out = self.transform(x, self._rng(epoch, 1, batch))
            if getattr(out, "shape", None) != x.shape:
                raise ValueError(f"transform must return an array of shape {x.shape}, "
                                 f"returned {getattr(out, 'shape', type(out).__name__)}")
            # a copy where the normalisation below would write into the transform's own array
            x = np.array(out, dtype=np.float32) if self.normalize is not None else np.asarray(out, dtype=np.float32)
        if self.normalize is not None:
            mean, std = self.normalize
            x -= np.float32(mean)
            x /= np.float32(std)
        return np.ascontiguousarray(x), self.labels[idx].astype(np.int64)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self._batch and not self._resume:
            # The previous iteration stopped early: start the next epoch, don't continue it.
            self._epoch, self._batch = self._epoch + 1, 0
        self._resume = False
        return self._run(self._epoch, self._batch)

    def _run(self, epoch: int, start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order, bs = self.order(epoch), self.batch_size
        batches = range(start, len(self))
        made = ((self._make_batch(order[b * bs:(b + 1) * bs], epoch, b) for b in batches) if self.prefetch == 0
                else _made_ahead(self, order, epoch, batches, self.prefetch))
        try:
            for b, (x, y) in zip(batches, made):
                # Count the batch as handed out before yielding, so a state_dict() taken while
                # the caller works on it resumes at the batch after it.
                self._batch = b + 1
                yield x, y
        finally:
            made.close()  # stops the prefetch thread now, at the epoch's end or when the caller stops early
        self._epoch, self._batch = epoch + 1, 0

    def __repr__(self) -> str:
        return (f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self._seed}, "
                f"epoch={self._epoch})")


_DONE = object()


def _made_ahead(loader: DataLoader, order: np.ndarray, epoch: int, batches: range, depth: int):
    """Yield ``loader._make_batch`` of each batch in ``batches``, built by a thread up to ``depth`` batches ahead.

    The thread stops when the epoch ends, when the consumer stops early (this generator is closed or collected)
    and at the first exception, which is raised here, at the batch it belongs to."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    bs = loader.batch_size

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for b in batches:
                if not put((True, loader._make_batch(order[b * bs:(b + 1) * bs], epoch, b))):
                    return
        except BaseException as e:  # handed to the consumer, raised at this batch
            put((False, e))
            return
        put((True, _DONE))

    worker = threading.Thread(target=produce, name="tinyconv-DataLoader-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # empty the queue so a blocked put() returns, then wait for the thread
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.01)
