"""``jeq.validate``: one message format for bad input, and the checks return plain Python values."""

import jax.numpy as jnp
import numpy as np
import pytest

from jeq import validate


def test_messages_name_the_call_the_argument_and_the_value():
    with pytest.raises(validate.ArgumentError, match=r"^jeq\.pkg\.fn\(rate=-1\.0\): must be > 0$"):
        validate.positive("jeq.pkg.fn", "rate", -1.0)
    with pytest.raises(ValueError, match=r"jeq\.pkg\.fn\(steps=0\): must be an int >= 1"):
        validate.integer("jeq.pkg.fn", "steps", 0, low=1)
    with pytest.raises(TypeError, match=r"jeq\.pkg\.fn\(mode='x'\): must be one of \['a', 'b'\]"):
        validate.one_of("jeq.pkg.fn", "mode", "x", ("b", "a"))


def test_argument_error_is_both_value_and_type_error():
    assert issubclass(validate.ArgumentError, ValueError) and issubclass(validate.ArgumentError, TypeError)


@pytest.mark.parametrize("value", [True, "1", None, [1.0], float("nan"), float("inf")])
def test_real_refuses_non_numbers_and_non_finite(value):
    with pytest.raises(validate.ArgumentError):
        validate.real("jeq.pkg.fn", "x", value)


def test_real_intervals_open_and_closed():
    assert validate.real("f", "x", 1, low=1) == 1.0 and isinstance(validate.real("f", "x", np.int32(1)), float)
    with pytest.raises(validate.ArgumentError, match=r"must be in \(0.0, 1.0\]"):
        validate.real("f", "x", 0.0, low=0.0, high=1.0, low_open=True)
    with pytest.raises(validate.ArgumentError, match="must be < 2"):
        validate.real("f", "x", 2.0, high=2, high_open=True)
    assert validate.nonnegative("f", "x", 0) == 0.0
    assert validate.real("f", "x", np.array(0.5)) == 0.5


def test_integer_accepts_numpy_ints_and_refuses_bools_and_floats():
    assert validate.integer("f", "n", np.int64(3), low=1, high=3) == 3
    assert type(validate.integer("f", "n", np.int64(3))) is int
    for bad in (True, 2.0, 4):
        with pytest.raises(validate.ArgumentError):
            validate.integer("f", "n", bad, low=1, high=3)


def test_array_checks_shape_ndim_and_dtype_of_numpy_and_jax_arrays():
    x = jnp.zeros((2, 3), jnp.float32)
    assert validate.array("f", "x", x, shape=(None, 3), dtype=np.floating) is x
    with pytest.raises(validate.ArgumentError, match=r"must have shape \(\*, 4\), got shape \(2, 3\) dtype float32"):
        validate.array("f", "x", x, shape=(None, 4))
    with pytest.raises(validate.ArgumentError, match="must have 1 axes"):
        validate.array("f", "x", np.zeros((2, 2)), ndim=1)
    with pytest.raises(validate.ArgumentError, match="must have dtype integer"):
        validate.array("f", "x", x, dtype=np.integer)


def test_all_finite_names_the_leaf_with_a_nan():
    tree = {"w": jnp.ones(3), "b": jnp.array([0.0, jnp.nan])}
    with pytest.raises(validate.ArgumentError, match=r"\['b'\] holds 1 non-finite"):
        validate.all_finite("jeq.pkg.fn", "params", tree)
    assert validate.all_finite("f", "p", {"n": np.arange(3)}) is not None  # integer leaves are always finite


def test_fail_is_the_one_way_to_raise():
    with pytest.raises(validate.ArgumentError, match=r"^jeq\.a\.b\(c=\[1\]\): must be a tuple$"):
        validate.fail("jeq.a.b", "c", [1], "must be a tuple")
