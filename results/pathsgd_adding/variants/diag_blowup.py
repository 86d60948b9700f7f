import functools, sys, jax, jax.numpy as jnp, numpy as np, optax
from jeq import data, pathsgd
seed=int(sys.argv[1]); lr=float(sys.argv[2]); init=sys.argv[3] if len(sys.argv)>3 else "np"
T=100
def mse_loss(params, xs, y): return (pathsgd.rnn_apply(params, xs, head="many_to_one")[0] - y) ** 2
path_sum = functools.partial(pathsgd.rnn_path_sum, length=T, head="many_to_one")
tx = optax.chain(optax.clip_by_global_norm(1.0), pathsgd.scale_by_path_norm(path_sum), optax.scale_by_learning_rate(lr))
step = pathsgd.make_train_step(mse_loss, tx); evaluate = pathsgd.make_eval_fn(mse_loss)
key = jax.random.fold_in(jax.random.key(seed), T); k_test, k_train, k_init = jax.random.split(key, 3)
xt, yt = data.adding_problem(k_test, 1000, T)
params = pathsgd.init_rnn(k_init, input_size=2, hidden_size=100, output_size=1, init=init)
st = tx.init(params)
k1 = pathsgd.path_kappa(path_sum, params).kappa1
print("kappa1 min/med/max per group:", [(f, float(jnp.min(k)), float(jnp.median(k)), float(jnp.max(k))) for f, k in zip(params._fields, k1)])
prev=params
for s in range(2000):
    if s % 100 == 0:
        X, Y = data.adding_problem(jax.random.fold_in(k_train, s // 100), 100 * 50, T)
        X = X.reshape(100, 50, T, 2); Y = Y.reshape(100, 50)
    params, st, m = step(params, st, X[s % 100], Y[s % 100])
    if (s + 1) % 50 == 0:
        rho = float(jnp.max(jnp.abs(jnp.linalg.eigvals(np.asarray(params.w_rec)))))
        d = [float(jnp.linalg.norm(a-b)) for a,b in zip(params, prev)]; prev=params
        print(s+1, "loss %.4g test %.4g rho %.4f gn %.3g un %.3g" % (float(m.loss), float(evaluate(params, xt, yt)), rho, float(m.grad_norm), float(m.update_norm)), "dgroup", ["%.2g"%x for x in d], flush=True)
        if not np.isfinite(float(m.loss)): break
