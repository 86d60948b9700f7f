"""Offline datasets and synthetic tasks. Nothing is downloaded at run time.

Every loader returns numpy arrays with a fixed, documented split and dtype, deterministic for a seed. Images are
float32 NHWC in [0, 1] and labels int32 (:class:`Split`). Packaged subsets need the ``data`` extra
(``pip install 'jeq[data]'``); full datasets are read from a path or ``$JEQ_DATA``.
"""

from jeq.data.batching import batches
from jeq.data.images import (
    DataNotFoundError,
    Split,
    ValidationSplit,
    cifar10,
    digits,
    fashion_mnist,
    generate_mnist1d,
    mnist,
    mnist1d,
    mnist_subset,
    read_idx,
    split_validation,
    write_idx,
)
from jeq.data.synthetic import adding_problem, logic_gates, sequential_images
from jeq.data.text import CharCorpus, char_corpus

__all__ = [
    "CharCorpus", "DataNotFoundError", "Split", "ValidationSplit", "adding_problem", "batches", "char_corpus", "cifar10",
    "digits", "fashion_mnist", "generate_mnist1d", "logic_gates", "mnist", "mnist1d", "mnist_subset", "read_idx",
    "sequential_images", "split_validation", "write_idx",
]
