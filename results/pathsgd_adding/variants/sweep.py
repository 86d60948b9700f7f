"""Scratch screening of Path-SGD variants on the adding problem (T=100). Not part of the repo."""
import functools, json, sys, time, math, argparse
import jax, jax.numpy as jnp, numpy as np, optax
from jeq import data, pathsgd

p = argparse.ArgumentParser()
p.add_argument("--tk", type=int, default=100)          # path length T_kappa
p.add_argument("--lr", type=float, default=0.3)
p.add_argument("--init", default="gaussian")
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--batch", type=int, default=50)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--warmup", type=int, default=0)
p.add_argument("--decay", default="none")             # none|cosine
p.add_argument("--match", action="store_true")         # match_first_step_norm
p.add_argument("--sqnorm", action="store_true")        # official code squared-output-norm Gamma
p.add_argument("--clip_after", type=float, default=0)  # clip the path-scaled direction instead
p.add_argument("--momentum", type=float, default=0)
p.add_argument("--head", default="many_to_one")
p.add_argument("--input_scale", type=float, default=None)
p.add_argument("--method", default="path_sgd")
p.add_argument("--bias_sgd", type=float, default=0)   # >0: biases get plain SGD at this lr
p.add_argument("--eps", type=float, default=1e-8)
p.add_argument("--gf", type=float, nargs=5, default=None)  # per-group factors w_in w_rec b w_out c
p.add_argument("--rec_scale", type=float, default=1.0)
p.add_argument("--clip_elem", type=float, default=0)
p.add_argument("--wout_sign", action="store_true")
p.add_argument("--out", default="/tmp/ps/results.jsonl")
p.add_argument("--seeds", type=int, nargs="+", default=[0])
p.add_argument("--T", type=int, default=100)
p.add_argument("--tag", default="")
a = p.parse_args()

def mse_loss(params, xs, y):
    return (pathsgd.rnn_apply(params, xs, head="many_to_one")[0] - y) ** 2

def sq_path_sum(u, *, length, head):
    ones = jnp.ones((length, u.w_in.shape[1]), u.w_in.dtype)
    return jnp.sum(pathsgd.rnn_apply(u, ones, head=head, activation=lambda x: x) ** 2)

if a.sqnorm:
    path_sum = functools.partial(sq_path_sum, length=a.tk, head=a.head)
else:
    path_sum = functools.partial(pathsgd.rnn_path_sum, length=a.tk, head=a.head)

lr = a.lr
if a.warmup or a.decay != "none":
    if a.decay == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0 if a.warmup else a.lr, a.lr, max(a.warmup, 1), a.steps, 0.0)
    else:
        lr = optax.linear_schedule(0.0, a.lr, a.warmup)
parts = []
if a.clip_after <= 0:
    parts.append(optax.clip_by_global_norm(a.clip))
if a.method == "path_sgd":
    ps0 = pathsgd.scale_by_path_norm(path_sum, eps=a.eps, match_first_step_norm=a.match); ps = ps0
    if a.bias_sgd > 0:
        def _init(p): return ps0.init(p)
        def _upd(g, st, p=None, **kw):
            s_, st = ps0.update(g, st, p)
            f = a.bias_sgd / a.lr
            return s_._replace(b=g.b * f, c=g.c * f), st
        ps = optax.GradientTransformationExtraArgs(_init, _upd)
    if a.gf is not None:
        def _init2(p): return ps0.init(p)
        def _upd2(g, st, p=None, **kw):
            s_, st = ps0.update(g, st, p)
            return type(s_)(*[x * f for x, f in zip(s_, a.gf)]), st
        ps = optax.GradientTransformationExtraArgs(_init2, _upd2)
    parts.append(ps)
elif a.method == "adam":
    parts.append(optax.scale_by_adam())
if a.clip_elem > 0:
    parts.append(optax.clip(a.clip_elem / a.lr))
if a.clip_after > 0:
    parts.append(optax.clip_by_global_norm(a.clip_after))
if a.momentum:
    parts.append(optax.trace(a.momentum))
parts.append(optax.scale_by_learning_rate(lr))
tx = optax.chain(*parts)
evaluate = pathsgd.make_eval_fn(mse_loss)
step = pathsgd.make_train_step(mse_loss, tx)
res = []
t0 = time.time()
for seed in a.seeds:
    key = jax.random.fold_in(jax.random.key(seed), a.T)
    k_test, k_train, k_init = jax.random.split(key, 3)
    xt, yt = data.adding_problem(k_test, 1000, a.T)
    params = pathsgd.init_rnn(k_init, input_size=2, hidden_size=100, output_size=1, init=a.init, input_scale=a.input_scale)
    params = params._replace(w_rec=params.w_rec * a.rec_scale)
    if a.wout_sign: params = params._replace(w_out=jnp.sign(params.w_out) / jnp.sqrt(params.w_out.shape[1]))
    st = tx.init(params)
    curve = []
    chunk = 100
    for s in range(a.steps):
        if s % chunk == 0:
            X, Y = data.adding_problem(jax.random.fold_in(k_train, s // chunk), chunk * a.batch, a.T)
            X = X.reshape(chunk, a.batch, a.T, 2); Y = Y.reshape(chunk, a.batch)
        params, st, m = step(params, st, X[s % chunk], Y[s % chunk])
        if (s + 1) % 250 == 0:
            curve.append(float(evaluate(params, xt, yt)))
    fin = curve[-1]; best = min([c for c in curve if math.isfinite(c)] or [math.nan])
    res.append((fin, best, next((250*(i+1) for i, c in enumerate(curve) if c < 0.01), None)))
dt = time.time() - t0
line = dict(tag=a.tag, args={k: v for k, v in vars(a).items() if k not in ("tag",)}, final=[r[0] for r in res],
            best=[r[1] for r in res], solved_at=[r[2] for r in res], seconds=round(dt, 1))
print(json.dumps(line), flush=True)
with open(a.out, "a") as f:
    f.write(json.dumps(line) + "\n")
