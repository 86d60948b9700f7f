"""Forward behaviour of jeq.fixedpoint.solve: convergence, tolerances, stats, pytrees, jit/vmap, Halpern selection."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jeq import fixedpoint as fp
from jeq_tests.fixedpoint.conftest import N, make_problem, normal_data, tanh_layer

SOLVER_NAMES = ["picard", "anderson", "broyden", "halpern"]
FAST = ["picard", "anderson", "broyden"]


def test_registry_has_the_four_solvers():
    assert set(fp.SOLVERS) >= set(SOLVER_NAMES)
    for name in SOLVER_NAMES:
        assert isinstance(fp.SOLVERS[name](), fp.FixedPointSolver)


@functools.lru_cache(maxsize=None)
def _solver_fn(solver, tol, maxiter):
    """A jitted solve of the tanh layer (cached: tests sharing a configuration compile it once)."""
    return jax.jit(lambda w, c: fp.solve(tanh_layer, jnp.zeros(N, w.dtype), w, c, solver=solver, tol=tol,
                                         maxiter=maxiter))


class EachSolverTest(chex.TestCase):
    """Every solver finds the fixed point of a contraction, jitted and not jitted (one idiom: chex.variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*SOLVER_NAMES)
    def test_each_solver_finds_the_fixed_point(self, name):
        w, c = make_problem(jnp.float32)
        tol = 1e-3 if name == "halpern" else 1e-5
        sol = self.variant(lambda w, c: fp.solve(tanh_layer, jnp.zeros(N, w.dtype), w, c, solver=name, tol=tol,
                                                 maxiter=20_000))(w, c)
        residual = float(jnp.linalg.norm(tanh_layer(sol.value, w, c) - sol.value))
        assert bool(sol.stats.converged)
        chex.assert_shape(sol.value, (N,))
        chex.assert_type(sol.value, jnp.float32)
        assert residual <= tol * 1.01 and abs(residual - float(sol.stats.residual)) < 1e-6
        # A contraction with factor 0.8: distance to z* is at most residual / (1 - 0.8).
        reference = _solver_fn("picard", 1e-7, 500)(w, c).value
        assert float(jnp.linalg.norm(sol.value - reference)) <= 5 * tol + 1e-6


def test_accelerated_solvers_take_fewer_steps(problem32):
    w, c = problem32
    steps = {name: int(_solver_fn(name, 1e-6, 500)(w, c).stats.num_steps) for name in FAST}
    assert steps["anderson"] < steps["picard"] and steps["broyden"] < steps["picard"]


def test_absolute_tolerance_is_honoured(problem32):
    w, c = problem32
    loose = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-2, maxiter=500)
    tight = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-6, maxiter=500)
    assert float(loose.stats.residual) <= 1e-2 and float(tight.stats.residual) <= 1e-6
    assert int(loose.stats.num_steps) < int(tight.stats.num_steps)
    # The solve stops at the first iterate below tol: one step earlier the residual was above it.
    earlier = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-2,
                       maxiter=int(loose.stats.num_steps) - 1)
    assert float(earlier.stats.residual) > 1e-2 and not bool(earlier.stats.converged)


def test_relative_tolerance_is_honoured(problem32):
    """rtol alone stops the solve (torchdeq #12: stop_mode='rel' was silently ignored)."""
    w, c = problem32
    rel = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-30, rtol=1e-2, maxiter=500)
    scale = float(jnp.linalg.norm(tanh_layer(rel.value, w, c)))
    assert bool(rel.stats.converged)
    assert float(rel.stats.residual) <= 1e-2 * scale
    assert abs(float(rel.stats.relative_residual) - float(rel.stats.residual) / scale) < 1e-6
    tight = fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-30, rtol=1e-5, maxiter=500)
    assert int(rel.stats.num_steps) < int(tight.stats.num_steps)


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_maxiter_reached_is_reported(name, problem32):
    w, c = problem32
    sol = _solver_fn(name, 1e-7, 3)(w, c)
    assert not bool(sol.stats.converged)
    assert int(sol.stats.num_steps) == 3
    assert float(sol.stats.residual) > 1e-7
    np.testing.assert_allclose(sol.stats.residual, jnp.linalg.norm(tanh_layer(sol.value, w, c) - sol.value), rtol=1e-5)


def test_nan_is_reported_not_returned_as_converged():
    sol = fp.solve(lambda z: jnp.log(z - 2.0), jnp.ones(3), solver="picard", tol=1e-3, maxiter=100)
    assert not bool(sol.stats.converged)
    assert int(sol.stats.num_steps) < 100  # stops at the first non-finite residual


def test_pytree_state():
    def fn(z, p):
        return {"a": 0.5 * jnp.tanh(z["b"].sum(axis=1) + p), "b": 0.3 * jnp.outer(z["a"], jnp.ones(2)) + 1.0}

    z0 = {"a": jnp.zeros(3), "b": jnp.zeros((3, 2))}
    p = jnp.array([0.1, -0.2, 0.3])
    for name in ("anderson",):  # flattening is shared by all solvers
        sol = jax.jit(lambda p: fp.solve(fn, z0, p, solver=name, tol=1e-6, maxiter=200))(p)
        chex.assert_trees_all_equal_shapes_and_dtypes(sol.value, z0)
        chex.assert_trees_all_close(fn(sol.value, p), sol.value, atol=1e-5, rtol=1e-7)


def test_jit_vmap_and_no_recompilation(problem32):
    w, _ = problem32
    cs = normal_data(3, (5, N))

    @jax.jit
    def batched(cs):
        return jax.vmap(lambda c: fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="anderson", tol=1e-6))(cs)

    sol = batched(cs)
    chex.assert_shape([sol.value, sol.stats.converged], [(5, N), (5,)])
    single = _solver_fn("anderson", 1e-6, 50)
    for i in range(5):
        np.testing.assert_allclose(sol.value[i], single(w, cs[i]).value, atol=2e-5)
    batched(cs + 1.0)
    assert batched._cache_size() == 1


def _relu_reference_map(z, c):
    """Spec section 6 reference case: ReLU, W = diag(1, 0.5), so W^T W = diag(1, 0.25); Fix T = {(t, 4/3): t >= 0}."""
    return jax.nn.relu(jnp.array([1.0, 0.25]) * z + c)


def test_halpern_reference_case():
    c = jnp.array([0.0, 1.0])
    z0 = jnp.array([5.0, 0.0])
    picard = fp.solve(_relu_reference_map, z0, c, solver="picard", tol=1e-5, maxiter=1000)
    np.testing.assert_allclose(picard.value, [5.0, 4 / 3], atol=1e-4)
    halpern = fp.solve(_relu_reference_map, z0, c, solver=fp.halpern(anchor=jnp.zeros(2)), tol=1e-5,
                       maxiter=1_000_000)
    assert bool(halpern.stats.converged)
    assert float(halpern.value[0]) < 1e-4 and abs(float(halpern.value[1]) - 4 / 3) < 1e-4


def test_halpern_selects_the_equilibrium_nearest_the_anchor_from_any_start():
    c = jnp.array([0.0, 1.0])
    starts = jnp.array([[5.0, 0.0], [2.0, 3.0], [0.5, 0.5], [9.0, 9.0]])
    run = jax.jit(jax.vmap(lambda z0, solver: fp.solve(_relu_reference_map, z0, c, solver=solver, tol=1e-5,
                                                      maxiter=1_000_000).value, in_axes=(0, None)),
                  static_argnums=1)
    picard = run(starts, fp.picard())
    assert float(jnp.ptp(picard[:, 0])) > 1.0  # Picard keeps the first coordinate of each start
    to_zero = run(starts, fp.halpern(anchor=jnp.zeros(2)))
    np.testing.assert_allclose(to_zero, jnp.tile(jnp.array([0.0, 4 / 3]), (4, 1)), atol=5e-4)
    # Anchor u = (3, 0): the nearest point of {(t, 4/3): t >= 0} is (3, 4/3).
    to_three = run(starts, fp.halpern(anchor=jnp.array([3.0, 0.0])))
    np.testing.assert_allclose(to_three, jnp.tile(jnp.array([3.0, 4 / 3]), (4, 1)), atol=5e-4)


def _temp_bytes(backward, maxiter, w, c):
    def loss(w, c):
        return jnp.sum(fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="anderson", maxiter=maxiter,
                                backward=backward).value)

    return jax.jit(jax.grad(loss)).lower(w, c).compile().memory_analysis().temp_size_in_bytes


def test_implicit_memory_does_not_grow_with_maxiter(problem32):
    """locuslab/deq #28: fixed-size histories; only unrolling stores the trajectory."""
    w, c = problem32
    assert _temp_bytes("implicit", 10, w, c) == _temp_bytes("implicit", 2000, w, c)


@pytest.mark.slow
def test_unrolled_memory_grows_with_maxiter(problem32):
    w, c = problem32
    assert _temp_bytes("unroll", 2000, w, c) > 100 * _temp_bytes("implicit", 2000, w, c)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(solver="newton"), ValueError, r"solve\(solver='newton'\): must be one of \['anderson'"),
        (dict(tol=0.0), ValueError, r"solve\(tol=0.0\): must be > 0"),
        (dict(tol=-1e-3), ValueError, r"solve\(tol=-0.001\): must be > 0"),
        (dict(rtol=-1.0), ValueError, r"solve\(rtol=-1.0\): must be >= 0"),
        (dict(maxiter=0), ValueError, r"solve\(maxiter=0\): must be an int >= 1"),
        (dict(backward="adjoint"), ValueError, r"solve\(backward='adjoint'\): must be one of \['implicit'"),
    ],
)
def test_bad_arguments(kwargs, error, match, problem32):
    w, c = problem32
    with pytest.raises(error, match=match):
        fp.solve(tanh_layer, jnp.zeros(N), w, c, **kwargs)


def test_shape_mismatch_names_both_shapes(problem32):
    w, c = problem32
    with pytest.raises(ValueError, match=r"fn\(z0, \*args\) has shape \(6,\) but z0 has shape \(4,\)"):
        fp.solve(lambda z, w, c: tanh_layer(jnp.zeros(N), w, c), jnp.zeros(4), w, c)
    with pytest.raises(ValueError, match=r"returns a pytree"):
        fp.solve(lambda z, w, c: (z, z), jnp.zeros(N), w, c)
    with pytest.raises(TypeError, match="floating point"):
        fp.solve(lambda z: z, jnp.zeros(3, jnp.int32))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fp.anderson(history=0), r"anderson\(history=0\): must be an int >= 1"),
        (lambda: fp.anderson(ridge=-1.0), r"anderson\(ridge=-1.0\): must be >= 0"),
        (lambda: fp.anderson(ridge="a"), r"anderson\(ridge='a'\): must be a real number"),
        (lambda: fp.phantom(damping="x"), r"phantom\(damping='x'\): must be a real number"),
        (lambda: fp.phantom(damping=0.0), r"phantom\(damping=0.0\): must be in \(0, 1\]"),
        (lambda: fp.picard(damping=1.5), r"picard\(damping=1.5\): must be in \(0, 1\]"),
        (lambda: fp.broyden(history=2.5), r"broyden\(history=2.5\): must be an int"),
        (lambda: fp.phantom(steps=0), r"phantom\(steps=0\): must be an int >= 1"),
        (lambda: fp.implicit(solver="cg"), r"implicit\(solver='cg'\): must be one of"),
        (lambda: fp.implicit(tol=0.0), r"implicit\(tol=0.0\): must be > 0"),
    ],
)
def test_bad_solver_configuration(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_halpern_anchor_shape_is_checked():
    with pytest.raises(ValueError, match=r"anchor has shape \(3,\) but z0 has shape \(2,\)"):
        fp.solve(_relu_reference_map, jnp.zeros(2), jnp.ones(2), solver=fp.halpern(anchor=jnp.zeros(3)))


def test_batch_level_stopping_over_a_named_vmap_axis(problem32):
    """axis_name: stop when ||F(Z) - Z||_F <= tol over the whole vmapped batch (MON/DEQ reference criterion)."""
    w, _ = problem32
    cs = normal_data(1, (5, N)) * jnp.arange(1, 6)[:, None]

    def run(axis_name, maxiter=50):
        return jax.vmap(lambda c: fp.solve(tanh_layer, jnp.zeros(N), w, c, solver="picard", tol=1e-3, maxiter=maxiter,
                                           axis_name=axis_name), axis_name="batch")(cs)

    per_example, batch = run(None), run("batch")
    assert len(set(np.asarray(per_example.stats.num_steps).tolist())) > 1
    steps = int(batch.stats.num_steps[0])
    assert bool(jnp.all(batch.stats.num_steps == steps)) and bool(jnp.all(batch.stats.converged))
    assert float(jnp.sqrt(jnp.sum(batch.stats.residual**2))) <= 1e-3
    earlier = run("batch", maxiter=steps - 1)
    assert float(jnp.sqrt(jnp.sum(earlier.stats.residual**2))) > 1e-3
    with pytest.raises(TypeError, match=r"axis_name=3\): must be a str"):
        fp.solve(tanh_layer, jnp.zeros(N), w, cs[0], axis_name=3)


def test_anderson_step_is_the_regularised_least_squares_mixing_of_its_history():
    """alpha = argmin_{1^T alpha = 1} ||sum_i alpha_i g_i||^2 + ridge * mean_i ||g_i||^2 ||alpha||^2 over the last m
    pairs and z_new = sum_i alpha_i (x_i + damping g_i), written out from the recorded history (float64 solve), at
    every step before and after the ring buffer fills; the state holds that history in ring order (update k in slot
    k % m) with its Gram matrix G G^T."""
    rng = np.random.default_rng(0)
    w, c = jnp.asarray(rng.normal(size=(6, 6)) * 0.3, jnp.float32), jnp.asarray(rng.normal(size=6), jnp.float32)
    f = lambda z: jnp.tanh(w @ z + c)  # noqa: E731
    m, ridge, damping = 3, 1e-2, 0.7
    solver = fp.anderson(history=m, ridge=ridge, damping=damping)
    state, xs, gs = solver.init(f, jnp.zeros(6)), np.zeros((m, 6)), np.zeros((m, 6))
    for k in range(7):
        xs[k % m] = np.asarray(state.z, np.float64)
        gs[k % m] = np.asarray(state.fz - state.z, np.float64)
        filled = min(k + 1, m)
        x, g = xs[:filled], gs[:filled]
        gram = g @ g.T
        alpha = np.linalg.solve(gram + ridge * np.trace(gram) / filled * np.eye(filled), np.ones(filled))
        expected = (alpha / alpha.sum()) @ (x + damping * g)
        state = solver.update(f, state)
        np.testing.assert_allclose(state.z, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state.gram, gs @ gs.T, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(state.ys, xs + damping * gs, rtol=1e-5, atol=1e-6)
