"""jeq.data: shapes, dtypes, label balance, determinism and bad input for every loader."""

from __future__ import annotations

import gzip
import pickle

import chex
import jax
import numpy as np
import pytest

import jeq.data as data
from jeq.data import images


def _check_split(split, n_train, n_test, image_shape, n_classes):
    chex.assert_shape([split.x_train, split.x_test], [(n_train, *image_shape), (n_test, *image_shape)])
    chex.assert_shape([split.y_train, split.y_test], [(n_train,), (n_test,)])
    chex.assert_type([split.x_train, split.x_test, split.y_train, split.y_test],
                     [np.float32, np.float32, np.int32, np.int32])
    chex.assert_tree_all_finite(split.x_train)
    assert set(np.unique(split.y_train)) == set(range(n_classes))
    assert set(np.unique(split.y_test)) == set(range(n_classes))


def test_mnist_subset_is_a_balanced_fixed_4000_1000_split():
    split = data.mnist_subset()
    _check_split(split, 4000, 1000, (28, 28, 1), 10)
    assert np.all(np.bincount(split.y_train) == 400) and np.all(np.bincount(split.y_test) == 100)
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0 and split.x_train.max() > 0.99
    # the raw file is sorted by label: the split must be shuffled
    assert len(np.unique(split.y_train[:50])) > 5


def test_mnist_subset_deterministic_per_seed_and_disjoint():
    a, b, c = data.mnist_subset(seed=0), data.mnist_subset(seed=0), data.mnist_subset(seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a.y_train, c.y_train)
    train_rows = {r.tobytes() for r in a.x_train.reshape(4000, -1)}
    assert sum(r.tobytes() in train_rows for r in a.x_test.reshape(1000, -1)) <= 5  # MNIST has a few duplicates


def test_loaders_return_copies_that_callers_may_mutate():
    a = data.mnist_subset()
    a.x_train[:] = -1.0
    assert data.mnist_subset().x_train.min() >= 0.0


def test_digits_stratified_split():
    split = data.digits()
    _check_split(split, 1442, 355, (8, 8, 1), 10)
    per_class = np.bincount(split.y_train) + np.bincount(split.y_test)
    assert np.array_equal(np.bincount(split.y_test), per_class // 5)  # floor(20 %) of each class
    assert split.x_train.max() == 1.0
    assert all(np.array_equal(u, v) for u, v in zip(split, data.digits()))


def test_mnist1d_generated_offline():
    split = data.mnist1d()
    chex.assert_shape([split.x_train, split.x_test], [(4000, 40), (1000, 40)])
    chex.assert_type([split.x_train, split.y_test], [np.float32, np.int32])
    counts = np.bincount(split.y_train, minlength=10)
    assert counts.min() > 300 and counts.max() < 500
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    again = data.generate_mnist1d()  # regenerated, not a copy of the cached arrays
    assert np.random.random() == before  # numpy's global generator is left as the caller set it
    assert np.array_equal(split.x_test, again.x_test) and np.array_equal(split.y_train, again.y_train)


def test_char_corpus_fixed_split_and_vocabulary():
    corpus = data.char_corpus()
    total = len(corpus.train) + len(corpus.valid) + len(corpus.test)
    assert total > 4_500_000
    assert abs(len(corpus.train) / total - 0.9) < 1e-3 and abs(len(corpus.test) / total - 0.05) < 1e-3
    assert corpus.train.dtype == np.int32 and corpus.train.max() < len(corpus.vocab)
    assert 60 <= len(corpus.vocab) <= 100 and "\n" in corpus.vocab and "e" in corpus.vocab
    assert "*" not in corpus.vocab and "#" not in corpus.vocab  # markdown stripped
    text = corpus.decode(corpus.train[:2000])
    assert "A Midsummer Night's Dream" in text
    assert corpus.encode("Tot").tolist() == [corpus.vocab.index("T"), corpus.vocab.index("o"), corpus.vocab.index("t")]
    assert corpus.decode(corpus.encode("Hamlet")) == "Hamlet"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        corpus.encode("naïve")


def test_adding_problem_definition():
    x, y = data.adding_problem(jax.random.key(3), 256, 100)
    chex.assert_shape([x, y], [(256, 100, 2), (256,)])
    chex.assert_type([x, y], np.float32)
    markers = x[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :50].sum(axis=1) == 1) and np.all(markers[:, 50:].sum(axis=1) == 1)
    np.testing.assert_allclose(y, (x[..., 0] * markers).sum(axis=1), rtol=1e-6)
    # predicting 1 gives MSE close to 1/6
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.04
    x2, y2 = data.adding_problem(jax.random.key(3), 256, 100)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    with pytest.raises(ValueError, match=r"adding_problem\(T=1\)"):
        data.adding_problem(jax.random.key(0), 4, 1)
    with pytest.raises(ValueError, match=r"adding_problem\(n=0\)"):
        data.adding_problem(jax.random.key(0), 0, 10)


@pytest.mark.parametrize(
    "name, table",
    [
        ("AND", [0, 0, 0, 1]),
        ("OR", [0, 1, 1, 1]),
        ("XOR", [0, 1, 1, 0]),
        ("NOT", [1, 0]),
        ("ID", [0, 1]),
    ],
)
def test_logic_gates_truth_tables_with_bias(name, table):
    x, y = data.logic_gates(name)
    assert x.dtype == np.float32 and y.shape == (len(table), 1)
    assert np.all(x[:, -1] == 1.0)
    assert y[:, 0].tolist() == table


def test_logic_gates_rejects_unknown_gate():
    with pytest.raises(ValueError, match=r"logic_gates\(name='NAND'\).*AND"):
        data.logic_gates("NAND")


def test_sequential_images_scan_order_and_permutation():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4, 1)
    seq = data.sequential_images(x)
    assert seq.shape == (2, 12, 1)
    assert seq[1, :, 0].tolist() == list(range(12, 24))
    perm = np.random.default_rng(0).permutation(12)
    permuted = data.sequential_images(x, perm)
    assert np.array_equal(permuted[:, :, 0], seq[:, perm, 0])
    with pytest.raises(ValueError, match="permutation of range"):
        data.sequential_images(x, np.zeros(12, dtype=int))
    with pytest.raises(ValueError, match=r"sequential_images\(x\): must have 4 axes, got shape \(2, 3, 4\)"):
        data.sequential_images(x[..., 0])


def test_batches_cover_epoch_and_are_reproducible():
    x, y = np.arange(10)[:, None], np.arange(10)
    epoch0 = list(data.batches(x, y, 3, seed=1))
    assert [len(b[1]) for b in epoch0] == [3, 3, 3]
    assert len(set(np.concatenate([b[1] for b in epoch0]))) == 9
    assert all(np.array_equal(xb[:, 0], yb) for xb, yb in epoch0)
    again = list(data.batches(x, y, 3, seed=1))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(epoch0, again))
    epoch1 = list(data.batches(x, y, 3, seed=1, epoch=1))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch0, epoch1))
    assert sum(len(b[1]) for b in data.batches(x, y, 3, seed=1, drop_last=False)) == 10
    with pytest.raises(ValueError, match="batch_size=0"):
        list(data.batches(x, y, 0, seed=0))
    with pytest.raises(ValueError, match=r"batches\(y\): must have shape \(10,\), got shape \(5,\)"):
        list(data.batches(x, y[:5], 2, seed=0))


# ------------------------------------------------------------------------------------------ path-based loaders


def _write_idx_set(directory, n_train=6, n_test=4, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, arr in arrays.items():
        data.write_idx(directory / (name + (".gz" if compress else "")), arr)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_idx_files_from_a_path(tmp_path, compress):
    arrays = _write_idx_set(tmp_path, compress=compress)
    split = data.mnist(tmp_path)
    chex.assert_shape([split.x_train, split.x_test], [(6, 28, 28, 1), (4, 28, 28, 1)])
    chex.assert_type([split.x_train, split.y_train], [np.float32, np.int32])
    np.testing.assert_allclose(split.x_train[..., 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-3)
    assert split.y_test.tolist() == [0, 1, 2, 3]


def test_fashion_mnist_found_through_jeq_data(tmp_path, monkeypatch):
    _write_idx_set(tmp_path / "fashion-mnist")
    monkeypatch.setenv("JEQ_DATA", str(tmp_path))
    assert data.fashion_mnist().x_train.shape == (6, 28, 28, 1)


def test_missing_dataset_names_every_place_looked_and_the_fix(tmp_path, monkeypatch):
    from jeq.data import images

    assert str(images.FASHION_DEBIAN_DIR) == "/usr/share/datasets/fashion-mnist"
    # the Debian package may be installed on this machine: point the system folder somewhere empty
    monkeypatch.setattr(images, "FASHION_DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("JEQ_DATA", str(tmp_path / "jd"))
    with pytest.raises(data.DataNotFoundError) as err:
        data.fashion_mnist(tmp_path / "given")
    msg = str(err.value)
    assert str(tmp_path / "given") in msg and str(tmp_path / "jd" / "fashion-mnist") in msg
    assert str(tmp_path / "debian") in msg and "apt-get install -y dataset-fashion-mnist" in msg
    with pytest.raises(data.DataNotFoundError, match="JEQ_DATA"):
        data.mnist(tmp_path / "nothing")


def test_truncated_idx_file_is_an_error_naming_the_file(tmp_path):
    _write_idx_set(tmp_path, compress=False)
    target = tmp_path / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        data.mnist(tmp_path)


def test_corrupted_gzip_is_an_error_naming_the_file(tmp_path):
    _write_idx_set(tmp_path, compress=True)
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:20])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*gzip"):
        data.mnist(tmp_path)


def test_bad_magic_and_mismatched_counts_are_errors(tmp_path):
    _write_idx_set(tmp_path, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.mnist(tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5))
    with pytest.raises(ValueError, match=r"shape \(6, 28, 28\).*shape \(5,\)"):
        data.mnist(tmp_path)


def _write_cifar(directory, n=3):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(range(n))}
        with open(directory / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_reads_pickle_batches_as_nhwc(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    split = data.cifar10(tmp_path)
    chex.assert_shape([split.x_train, split.x_test], [(15, 32, 32, 3), (3, 32, 32, 3)])
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh)[b"data"]
    # channel-major rows become NHWC: pixel (0, 0) of image 0 has the first R, G and B bytes of each plane
    np.testing.assert_allclose(split.x_test[0, 0, 0] * 255, raw[0, [0, 1024, 2048]], atol=1e-3)


def test_cifar10_truncated_or_missing(tmp_path):
    _write_cifar(tmp_path)
    target = tmp_path / "data_batch_3"
    target.write_bytes(target.read_bytes()[:50])
    with pytest.raises(ValueError, match="data_batch_3"):
        data.cifar10(tmp_path)
    with pytest.raises(data.DataNotFoundError, match="cifar-10-batches-py"):
        data.cifar10(tmp_path / "absent")


def test_split_validation_holds_out_the_same_draw_as_before_and_partitions_the_training_set():
    split = data.digits()
    parts = data.split_validation(split, size=200, seed=3)
    # the draw jeq.nas.load_dataset and experiments/pathsgd_seqmnist.py made inline before the helper existed
    order = np.random.default_rng(3).permutation(len(split.x_train))
    np.testing.assert_array_equal(parts.x_val, split.x_train[order[:200]])
    np.testing.assert_array_equal(parts.y_train, split.y_train[order[200:]])
    np.testing.assert_array_equal(parts.x_test, split.x_test)
    rows = np.concatenate([parts.x_train, parts.x_val]).reshape(len(split.x_train), -1)
    assert sorted(map(bytes, rows)) == sorted(map(bytes, split.x_train.reshape(len(split.x_train), -1)))
    with pytest.raises(ValueError, match=r"jeq\.data\.split_validation\(size=1442\)"):
        data.split_validation(split, size=len(split.x_train))
