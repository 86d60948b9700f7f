"""Eager argument checks shared by every jeq package, with one message format.

Every public jeq function checks its static arguments before tracing and fails with the house message::

    jeq.<package>.<function>(<argument>=<value>): must be <what is allowed>

Each checker takes ``where`` (the public name of the call, e.g. ``"jeq.pathsgd.path_sgd"``), the argument's name and
its value, and returns the value converted to a plain Python type (``float``, ``int``) so callers can keep using it
as a static argument. Failures raise :class:`ArgumentError`, which is both a ``ValueError`` and a ``TypeError`` so
callers may catch whichever reads better (a wrong type and a value out of range are both bad input).

>>> from jeq import validate
>>> validate.positive("jeq.example.f", "learning_rate", 0.1)
0.1
>>> validate.integer("jeq.example.f", "steps", 3, low=1)
3
>>> validate.positive("jeq.example.f", "learning_rate", -1.0)
Traceback (most recent call last):
...
jeq.validate.ArgumentError: jeq.example.f(learning_rate=-1.0): must be > 0
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NoReturn

import numpy as np

__all__ = [
    "ArgumentError",
    "all_finite",
    "array",
    "fail",
    "integer",
    "nonnegative",
    "one_of",
    "positive",
    "real",
]


class ArgumentError(ValueError, TypeError):
    """Bad input to a jeq function: raised before any tracing, the message names the call, argument and value."""


def fail(where: str, argument: str, value: Any, allowed: str) -> NoReturn:
    """Raise ``ArgumentError("<where>(<argument>=<value!r>): <allowed>")``.

    ``allowed`` is the end of the sentence, normally starting with "must": ``"must be one of ['a', 'b']"``.
    """
    raise ArgumentError(f"{where}({argument}={value!r}): {allowed}")


def _is_real(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite"


def real(
    where: str,
    argument: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the interval given by ``low``/``high`` (closed unless ``*_open``), as ``float``.

    Python and numpy ints and floats (and 0-d arrays of them) are accepted; ``bool`` is not a number here.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if not _is_real(value):
        fail(where, argument, value, "must be a real number")
    number = float(value)
    inside = np.isfinite(number)
    if low is not None:
        inside = inside and (number > low if low_open else number >= low)
    if high is not None:
        inside = inside and (number < high if high_open else number <= high)
    if not inside:
        fail(where, argument, value, f"must be {_interval(low, high, low_open, high_open)}")
    return number


def positive(where: str, argument: str, value: Any) -> float:
    """A finite real number > 0, as ``float``."""
    return real(where, argument, value, low=0, low_open=True)


def nonnegative(where: str, argument: str, value: Any) -> float:
    """A finite real number >= 0, as ``float``."""
    return real(where, argument, value, low=0)


def integer(where: str, argument: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (Python or numpy, not ``bool``) in ``[low, high]``, as ``int``."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            or (low is not None and value < low) or (high is not None and value > high)):
        bounds = "" if low is None and high is None else " " + _interval(low, high, False, False)
        fail(where, argument, value, f"must be an int{bounds}")
    return int(value)


def one_of(where: str, argument: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` itself when it is one of ``choices`` (compared with ``==``)."""
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set/dict
        ok = False
    if not ok:
        fail(where, argument, value, f"must be one of {sorted(choices, key=str)!r}")
    return value


def array(
    where: str,
    argument: str,
    value: Any,
    *,
    shape: Sequence[int | None] | None = None,
    ndim: int | None = None,
    dtype: Any = None,
) -> Any:
    """``value`` itself when it has ``ndim`` axes, the ``shape`` (``None`` entries match any size) and the ``dtype``
    kind (``dtype`` is a numpy dtype or an abstract kind such as ``np.floating``).

    Works on numpy and JAX arrays alike (and on ``jax.ShapeDtypeStruct``); the message shows the shape and dtype seen.
    """
    got_shape = tuple(np.shape(value)) if not hasattr(value, "shape") else tuple(value.shape)
    got_dtype = np.dtype(value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype)  # no asarray of a tracer
    seen = f"shape {got_shape} dtype {got_dtype}"
    if ndim is not None and len(got_shape) != ndim:
        raise ArgumentError(f"{where}({argument}): must have {ndim} axes, got {seen}")
    if shape is not None:
        expected = tuple(shape)
        if len(expected) != len(got_shape) or any(e is not None and e != g for e, g in zip(expected, got_shape)):
            wanted = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ("," * (len(expected) == 1)) + ")"
            raise ArgumentError(f"{where}({argument}): must have shape {wanted}, got {seen}")
    if dtype is not None:
        if not np.issubdtype(got_dtype, dtype):
            name = dtype.__name__ if isinstance(dtype, type) else str(np.dtype(dtype))
            raise ArgumentError(f"{where}({argument}): must have dtype {name}, got {seen}")
    return value


def all_finite(where: str, argument: str, tree: Any) -> Any:
    """``tree`` itself when every leaf of the pytree is finite (host-side check: call it outside ``jit``).

    The message names the first leaf (by its tree path) that holds a NaN or an infinity.
    """
    import jax

    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        values = np.asarray(leaf)
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise ArgumentError(
                f"{where}({argument}): leaf {jax.tree_util.keystr(path) or '<root>'} holds {bad} non-finite value(s)"
            )
    return tree
