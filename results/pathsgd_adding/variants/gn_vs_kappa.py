"""Diagonal Gauss-Newton curvature E[(dy/dw_i)^2] on adding-problem data vs Path-SGD kappa1, per weight group (scratch analysis)."""
import functools, jax, jax.numpy as jnp, numpy as np
from jeq import data, pathsgd
T=100
for init in ["gaussian","np"]:
    params = pathsgd.init_rnn(jax.random.key(0), input_size=2, hidden_size=100, output_size=1, init=init)
    x, y = data.adding_problem(jax.random.key(1), 256, T)
    f = lambda p, xs: pathsgd.rnn_apply(p, xs, head="many_to_one")[0]
    J = jax.vmap(jax.grad(f), in_axes=(None,0))(params, x)
    gn = jax.tree_util.tree_map(lambda j: jnp.mean(j**2, 0), J)
    for tk in [10, 100]:
        k1 = pathsgd.path_kappa(functools.partial(pathsgd.rnn_path_sum, length=tk, head="many_to_one"), params).kappa1
        print(init, "T_k", tk, {n: (float(jnp.median(a)), float(jnp.median(b)), float(jnp.median(a/(b+1e-12)))) for n, a, b in zip(params._fields, gn, k1)})
