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
    """Bad input to a jeq function: raised before any tracing, the message names the call, argument and value.

    It is both a ``ValueError`` and a ``TypeError``, so either ``except`` clause catches it:

    >>> from jeq.validate import ArgumentError, positive
    >>> issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, TypeError)
    True
    >>> try:
    ...     positive("jeq.example.f", "learning_rate", "fast")
    ... except TypeError as error:
    ...     print(error)
    jeq.example.f(learning_rate='fast'): must be a real number
    """


def fail(where: str, argument: str, value: Any, allowed: str) -> NoReturn:
    """Raise ``ArgumentError("<where>(<argument>=<value!r>): <allowed>")``.

    ``allowed`` is the end of the sentence, normally starting with "must": ``"must be one of ['a', 'b']"``.

    >>> from jeq.validate import fail
    >>> fail("jeq.example.f", "mode", "c", "must be one of ['a', 'b']")
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(mode='c'): must be one of ['a', 'b']
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

    >>> import numpy as np
    >>> from jeq.validate import real
    >>> real("jeq.example.f", "beta", np.float32(0.5), low=0, high=1, high_open=True)
    0.5
    >>> real("jeq.example.f", "beta", 1.0, low=0, high=1, high_open=True)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(beta=1.0): must be in [0, 1)
    >>> real("jeq.example.f", "beta", True)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(beta=True): must be a real number
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
    """A finite real number ``value > 0``, as ``float``.

    >>> from jeq.validate import positive
    >>> positive("jeq.example.f", "learning_rate", 3)
    3.0
    >>> positive("jeq.example.f", "learning_rate", 0.0)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(learning_rate=0.0): must be > 0
    """
    return real(where, argument, value, low=0, low_open=True)


def nonnegative(where: str, argument: str, value: Any) -> float:
    """A finite real number ``value >= 0``, as ``float``.

    >>> from jeq.validate import nonnegative
    >>> nonnegative("jeq.example.f", "weight_decay", 0)
    0.0
    >>> nonnegative("jeq.example.f", "weight_decay", float("inf"))
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(weight_decay=inf): must be >= 0
    """
    return real(where, argument, value, low=0)


def integer(where: str, argument: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """An integer ``low <= value <= high`` (Python or numpy, not ``bool``), as ``int``.

    >>> import numpy as np
    >>> from jeq.validate import integer
    >>> integer("jeq.example.f", "steps", np.int64(5), low=1)
    5
    >>> integer("jeq.example.f", "steps", 2.0, low=1)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(steps=2.0): must be an int >= 1
    """
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            or (low is not None and value < low) or (high is not None and value > high)):
        bounds = "" if low is None and high is None else " " + _interval(low, high, False, False)
        fail(where, argument, value, f"must be an int{bounds}")
    return int(value)


def one_of(where: str, argument: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` itself when ``value in choices`` (compared with ``==``).

    >>> from jeq.validate import one_of
    >>> one_of("jeq.example.f", "solver", "anderson", ("picard", "anderson"))
    'anderson'
    >>> one_of("jeq.example.f", "solver", "newton", ("picard", "anderson"))
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(solver='newton'): must be one of ['anderson', 'picard']
    """
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

    >>> import numpy as np
    >>> from jeq.validate import array
    >>> array("jeq.example.f", "x", np.zeros((4, 3)), shape=(None, 3), dtype=np.floating).shape
    (4, 3)
    >>> array("jeq.example.f", "x", np.zeros((4, 2), np.int32), shape=(None, 3))
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(x): must have shape (*, 3), got shape (4, 2) dtype int32
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

    >>> import numpy as np
    >>> from jeq.validate import all_finite
    >>> params = {"w": np.ones(3), "b": np.array([0.0, np.nan])}
    >>> all_finite("jeq.example.f", "params", {"w": np.ones(3)})["w"].shape
    (3,)
    >>> all_finite("jeq.example.f", "params", params)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.example.f(params): leaf ['b'] holds 1 non-finite value(s)
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
