"""Under jax.vmap the forward loop is batched by hand (one while_loop, frozen examples keep z, f(z) and count):
each example must still stop by its own rule, exactly as when it is solved alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq import fixedpoint as fp


def _problem():
    w = 1.5 * jax.random.normal(jax.random.key(0), (12, 12)) / 12
    xs = jax.random.normal(jax.random.key(1), (9, 12)) * jnp.linspace(0.1, 3.0, 9)[:, None]  # different step counts
    return w, xs


def _layer(z, w, x):
    return jnp.tanh(w @ z + x)


@pytest.mark.parametrize("solver", ["picard", "anderson", "broyden"])
def test_vmapped_solve_stops_each_example_as_if_solved_alone(solver):
    w, xs = _problem()
    batched = jax.jit(jax.vmap(lambda x: fp.solve(_layer, jnp.zeros(12), w, x, solver=solver, tol=1e-5,
                                                  maxiter=60)))(xs)
    alone = [fp.solve(_layer, jnp.zeros(12), w, x, solver=solver, tol=1e-5, maxiter=60) for x in xs]
    np.testing.assert_array_equal(batched.stats.num_steps, [int(s.stats.num_steps) for s in alone])
    np.testing.assert_array_equal(batched.stats.converged, [bool(s.stats.converged) for s in alone])
    np.testing.assert_allclose(batched.value, np.stack([s.value for s in alone]), atol=1e-6)
    assert len(set(np.asarray(batched.stats.num_steps).tolist())) > 1  # the examples really stop at different steps


def test_batch_level_stop_takes_one_step_count_for_the_whole_batch():
    w, xs = _problem()
    out = jax.jit(jax.vmap(lambda x: fp.solve(_layer, jnp.zeros(12), w, x, solver="anderson", tol=1e-5,
                                              axis_name="batch"), axis_name="batch"))(xs)
    per_example = jax.jit(jax.vmap(lambda x: fp.solve(_layer, jnp.zeros(12), w, x, solver="anderson",
                                                      tol=1e-5)))(xs)
    assert len(set(np.asarray(out.stats.num_steps).tolist())) == 1
    assert int(out.stats.num_steps[0]) >= int(jnp.max(per_example.stats.num_steps))
    frobenius = jnp.sqrt(jnp.sum(jax.vmap(lambda z, x: jnp.sum((_layer(z, w, x) - z) ** 2))(out.value, xs)))
    assert float(frobenius) <= 1e-5


def test_nested_vmap_and_implicit_gradient_match_per_example_solves():
    w, xs = _problem()

    def loss(w, batch):
        return jnp.sum(jax.vmap(lambda x: fp.solve(_layer, jnp.zeros(12), w, x, tol=1e-7, maxiter=100).value)(batch)
                       ** 2)

    grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w, xs.reshape(3, 3, 12))
    for grad, batch in zip(grads, xs.reshape(3, 3, 12)):
        reference = sum(jax.grad(lambda w, x: jnp.sum(fp.solve(_layer, jnp.zeros(12), w, x, tol=1e-7,
                                                               maxiter=100).value ** 2))(w, x) for x in batch)
        np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-5)
