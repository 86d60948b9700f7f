"""Target algorithms: evosax's DE, GA, PSO and SA behind one registry of tunable hyper-parameters.

Each :class:`Algorithm` declares its hyper-parameters θ = (θ_1, ..., θ_K) as :class:`HyperParameter` records (name,
kind, range or choices, default) and one pure function that runs the evosax algorithm once::

    best = algorithm.run(static, traced, key, objective, data, low=..., high=..., dimension=..., evaluations=...)

- ``static``: the values of the *grouped* hyper-parameters (population size, DE's number of difference vectors). They
  change array shapes or Python control flow, so :func:`jeq.tune.evaluate` compiles one function per distinct value
  and groups a batch of θ by them.
- ``traced``: every other hyper-parameter as a JAX scalar (a float, or the index of a categorical choice). Continuous
  ones go into the evosax ``Params`` struct (``params.replace(crossover_rate=...)``); discrete ones are traced switches
  where evosax has a traced field (DE's base vector: ``Params.elitism``). Everything traced is vmappable.

The run draws its initial population uniformly in the box ``[low, high]^d``, spends at most ``evaluations`` objective
evaluations (``population_size`` per generation, the initial population included; generations in ``lax.scan``) and
returns the best objective seen. Nothing of DE/GA/PSO/SA is reimplemented here: the generations are evosax's
``ask``/``tell``.

Mutation step sizes that evosax keeps outside ``Params`` (SimpleGA's and SA's ``std_schedule``, 1.0) are tuned
exactly through a change of variables: the algorithm searches ``y`` with ``x = σ·y`` (initial population ``x0/σ``),
so its unit-variance Gaussian moves in ``y`` are moves of standard deviation ``σ`` in ``x``; GA's uniform crossover
and SA's Metropolis test (which sees only objective values) are unchanged by the rescaling.

Not available in evosax 0.3.2, so not offered: DE's exponential crossover and current-to-best/1 strategy, GA's
crossover operators other than uniform and its tournament selection (it keeps the best half), PSO's ring topology,
SA's move types other than an isotropic Gaussian.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate

__all__ = ["ALGORITHMS", "Algorithm", "HyperParameter", "KINDS", "default_theta", "get_algorithm",
           "hyperparameter", "population_algorithm", "validate_theta"]

KINDS = ("float", "log-float", "int", "categorical")
"""Kinds of hyper-parameter: bounded real, bounded real searched in log space, bounded integer, finite choice."""


def _same(value: Any, choice: Any) -> bool:
    """``value == choice`` without ``True == 1`` (a bool matches only a bool)."""
    try:
        equal = bool(value == choice)
    except (TypeError, ValueError):
        return False
    return equal and isinstance(value, (bool, np.bool_)) == isinstance(choice, (bool, np.bool_))


class HyperParameter(NamedTuple):
    """One tunable hyper-parameter of a target algorithm.

    >>> from jeq.tune import HyperParameter, get_algorithm
    >>> HyperParameter._fields
    ('name', 'kind', 'low', 'high', 'choices', 'default', 'grouped', 'doc')
    >>> step = get_algorithm("sa").hyperparameters[1]
    >>> step.name, step.kind, step.low, step.high, step.default
    ('step_size', 'log-float', 0.001, 10.0, 1.0)
    """

    name: str
    """Name, unique within its algorithm (also the key of a θ dict)."""
    kind: str
    """One of :data:`KINDS`."""
    low: float | None
    """Lower bound (``float``, ``log-float``, ``int``); ``None`` for ``categorical``."""
    high: float | None
    """Upper bound, inclusive; ``None`` for ``categorical``."""
    choices: tuple | None
    """The allowed values of a ``categorical`` hyper-parameter (``None`` otherwise)."""
    default: Any
    """The library's default (evosax's where it has one)."""
    grouped: bool
    """True when the value changes shapes or control flow: one compiled run per value, batches grouped by it."""
    doc: str = ""
    """What the hyper-parameter does."""

    @property
    def values(self) -> tuple:
        """The finite list of values of a ``categorical`` or ``int`` hyper-parameter (``()`` for real ones)."""
        if self.kind == "categorical":
            return tuple(self.choices)
        if self.kind == "int":
            return tuple(range(int(self.low), int(self.high) + 1))
        return ()

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the range / among the choices."""
        if self.kind == "categorical":
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return bool(np.isfinite(value) and self.low <= value <= self.high)


def hyperparameter(
    name: str,
    kind: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[Any] | None = None,
    default: Any = None,
    grouped: bool = False,
    doc: str = "",
) -> HyperParameter:
    """A validated :class:`HyperParameter`: ``low < high`` (both > 0 for ``log-float``), non-empty distinct
    ``choices``, a default inside the range.

    Raises:
        ArgumentError: empty or inverted ranges, unknown kinds, defaults outside the range.

    >>> from jeq.tune import hyperparameter
    >>> hyperparameter("learning_rate", "log-float", low=1e-4, high=1.0, default=1e-2).kind
    'log-float'
    >>> hyperparameter("learning_rate", "log-float", low=0.0, high=1.0)  # log space needs low > 0
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.tune.hyperparameter(...): must be ...
    """
    where = "jeq.tune.hyperparameter"
    if not isinstance(name, str) or not name:
        validate.fail(where, "name", name, "must be a non-empty string")
    validate.one_of(where, "kind", kind, KINDS)
    if kind == "categorical":
        if choices is None or len(choices) == 0:
            validate.fail(where, "choices", choices, f"must be a non-empty sequence for categorical {name!r}")
        if len(set(map(repr, choices))) != len(choices):
            validate.fail(where, "choices", choices, "must be distinct")
        if low is not None or high is not None:
            validate.fail(where, "low", low, f"must be None for categorical {name!r} (use choices)")
        hp = HyperParameter(name, kind, None, None, tuple(choices), default, bool(grouped), doc)
    else:
        if choices is not None:
            validate.fail(where, "choices", choices, f"must be None for {kind} {name!r} (use low/high)")
        low = validate.real(where, "low", low)
        high = validate.real(where, "high", high)
        if not low < high:
            validate.fail(where, "high", high, f"must be > low={low} (empty or inverted range for {name!r})")
        if kind == "log-float" and low <= 0:
            validate.fail(where, "low", low, f"must be > 0 for log-float {name!r}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            validate.fail(where, "low", (low, high), f"must be integers for int {name!r}")
        if kind == "int":
            low, high = int(low), int(high)
        hp = HyperParameter(name, kind, low, high, None, default, bool(grouped), doc)
    if not hp.contains(default):
        validate.fail(where, "default", default, f"must lie in the range/choices of {name!r}")
    return hp


class Algorithm(NamedTuple):
    """A target algorithm: its tunable hyper-parameters and one pure run.

    >>> from jeq.tune import ALGORITHMS, Algorithm
    >>> Algorithm._fields
    ('name', 'hyperparameters', 'run', 'doc')
    >>> sorted(ALGORITHMS), [h.name for h in ALGORITHMS["sa"].hyperparameters][:2]
    (['de', 'ga', 'pso', 'sa'], ['population_size', 'step_size'])
    """

    name: str
    """Registry name, e.g. ``"de"``."""
    hyperparameters: tuple[HyperParameter, ...]
    """The tunable hyper-parameters, in the order the RL policy emits them."""
    run: Callable[..., jax.Array]
    """``run(static, traced, key, objective, data, *, low, high, dimension, evaluations) -> best objective`` for one
    run (a JAX scalar); ``static`` maps grouped names to Python values, ``traced`` the others to JAX scalars (the
    index of the choice for categorical ones)."""
    doc: str = ""
    """One line: what the algorithm is and where it comes from."""

    def hyperparameter(self, name: str) -> HyperParameter:
        """The hyper-parameter called ``name``."""
        for hp in self.hyperparameters:
            if hp.name == name:
                return hp
        validate.fail(f"jeq.tune.{self.name}", "name", name, f"must be one of {[h.name for h in self.hyperparameters]}")


def default_theta(space: Algorithm | Sequence[HyperParameter]) -> dict[str, Any]:
    """The default θ of an algorithm (or of a sequence of hyper-parameters).

    >>> from jeq.tune import default_theta, get_algorithm
    >>> default_theta(get_algorithm("sa"))
    {'population_size': 4, 'step_size': 1.0, 'temperature_init': 1.0, 'temperature_decay': 0.999, 'boltzmann_constant': 5.0}
    """
    hps = space.hyperparameters if isinstance(space, Algorithm) else space
    return {hp.name: hp.default for hp in hps}


def validate_theta(space: Algorithm | Sequence[HyperParameter], theta: Mapping[str, Any], *,
                   where: str = "jeq.tune.validate_theta") -> dict[str, Any]:
    """``theta`` completed with defaults for the names it leaves out, as plain Python values.

    Raises:
        ArgumentError: unknown names, or a value outside its range/choices.

    >>> from jeq.tune import get_algorithm, validate_theta
    >>> sa = get_algorithm("sa")
    >>> validate_theta(sa, {"step_size": 0.5})["step_size"], validate_theta(sa, {})["temperature_decay"]
    (0.5, 0.999)
    >>> validate_theta(sa, {"step_size": 50.0})
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.tune.validate_theta(step_size=50.0): must be ...
    """
    hps = space.hyperparameters if isinstance(space, Algorithm) else tuple(space)
    if not isinstance(theta, Mapping):
        validate.fail(where, "theta", theta, "must be a mapping from hyper-parameter name to value")
    names = {hp.name for hp in hps}
    unknown = sorted(set(theta) - names)
    if unknown:
        validate.fail(where, "theta", dict(theta), f"names unknown hyper-parameters {unknown}; known: {sorted(names)}")
    out = {}
    for hp in hps:
        value = theta.get(hp.name, hp.default)
        if isinstance(value, np.generic):
            value = value.item()
        if not hp.contains(value):
            allowed = f"one of {list(hp.choices)!r}" if hp.kind == "categorical" else f"in [{hp.low}, {hp.high}]"
            validate.fail(where, hp.name, value, f"must be {allowed}")
        if hp.kind == "int":
            value = int(value)
        elif hp.kind in ("float", "log-float"):
            value = float(value)
        out[hp.name] = value
    return out


# --------------------------------------------------------------------------------------------- shared runner

@functools.lru_cache(maxsize=None)
def _strategy(cls: type, population_size: int, dimension: int, **kwargs: Any) -> Any:
    """One evosax object per (class, shape): its jitted ask/tell are traced once per shape."""
    return cls(population_size=population_size, solution=jnp.zeros(dimension), **kwargs)


def _population_run(es: Any, params: Any, key: jax.Array, objective: Callable, data: Any, *, low: float,
                    high: float, dimension: int, evaluations: int, scale: jax.Array | float = 1.0) -> jax.Array:
    """evosax ask/tell for ``evaluations // P - 1`` generations after an initial population of ``P`` uniform points."""
    population_size = es.population_size
    generations = evaluations // population_size - 1
    key_init, key_es, key_gen = jax.random.split(key, 3)
    x0 = jax.random.uniform(key_init, (population_size, dimension), minval=low, maxval=high)
    fitness_fn = jax.vmap(lambda y: objective(data, scale * y))
    y0 = x0 / scale
    state = es.init(key_es, y0, fitness_fn(y0), params)

    def generation(state, k):
        k_ask, k_tell = jax.random.split(k)
        y, state = es.ask(k_ask, state, params)
        state, _ = es.tell(k_tell, y, fitness_fn(y), state, params)
        return state, None

    state, _ = jax.lax.scan(generation, state, jax.random.split(key_gen, generations))
    return state.best_fitness


def _check_budget(name: str, population_size: int, evaluations: int, minimum_generations: int = 2) -> None:
    if evaluations // population_size < minimum_generations:
        validate.fail(f"jeq.tune.{name}", "evaluations", evaluations,
                      f"must allow >= {minimum_generations} generations of population_size={population_size}")


def population_algorithm(name: str, evosax_class: str, hyperparameters: tuple[HyperParameter, ...], *,
                         params: Callable[[Mapping[str, jax.Array]], dict[str, Any]],
                         strategy: tuple[str, ...] = (), scale: str | None = None, doc: str = "") -> Algorithm:
    """An :class:`Algorithm` that runs ``evosax.algorithms.<evosax_class>`` by :func:`_population_run`.

    ``params(traced)`` maps the traced hyper-parameters to fields of the evosax ``Params`` struct
    (``es.default_params.replace(**params(traced))``); ``strategy`` names grouped hyper-parameters passed to the evosax
    constructor (they change shapes); ``scale`` names the traced hyper-parameter σ of the change of variables x = σ·y
    (module docstring), if any. Every run needs ``evaluations >= 2 * population_size``.

    A DE with its crossover rate as the only tunable hyper-parameter:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq.tune import hyperparameter, population_algorithm
    >>> de = population_algorithm(
    ...     "de_cr", "DifferentialEvolution",
    ...     (hyperparameter("population_size", "categorical", choices=(8,), default=8, grouped=True),
    ...      hyperparameter("crossover_rate", "float", low=0.0, high=1.0, default=0.9)),
    ...     params=lambda traced: {"crossover_rate": traced["crossover_rate"]})
    >>> best = de.run({"population_size": 8}, {"crossover_rate": jnp.float32(0.9)}, jax.random.key(0),
    ...               lambda data, x: jnp.sum(x ** 2), None, low=-1.0, high=1.0, dimension=2, evaluations=400)
    >>> bool(best < 1e-3)
    True
    """

    def run(static, traced, key, objective, data, *, low, high, dimension, evaluations):
        import evosax.algorithms

        _check_budget(name, static["population_size"], evaluations)
        es = _strategy(getattr(evosax.algorithms, evosax_class), static["population_size"], dimension,
                       **{field: static[field] for field in strategy})
        return _population_run(es, es.default_params.replace(**params(traced)), key, objective, data, low=low,
                               high=high, dimension=dimension, evaluations=evaluations,
                               scale=1.0 if scale is None else traced[scale])

    return Algorithm(name=name, hyperparameters=hyperparameters, run=run, doc=doc)


def _pick(*names: str) -> Callable[[Mapping[str, jax.Array]], dict[str, jax.Array]]:
    """``params`` for :func:`population_algorithm` when the hyper-parameters are evosax fields of the same names."""
    return lambda traced: {field: traced[field] for field in names}


DE = population_algorithm(
    "de", "DifferentialEvolution",
    (
        hyperparameter("population_size", "categorical", choices=(8, 16, 32, 64), default=32, grouped=True,
                       doc="population size P (evosax has no default; 32 is jeq's)"),
        hyperparameter("base_vector", "categorical", choices=("rand", "best"), default="best",
                       doc="DE/rand/1 or DE/best/1: evosax Params.elitism, a traced switch"),
        hyperparameter("num_diff", "int", low=1, high=2, default=1, grouped=True,
                       doc="number of difference vectors (DE/x/1 or DE/x/2)"),
        hyperparameter("differential_weight", "float", low=0.0, high=2.0, default=0.8, doc="F, mutation scale"),
        hyperparameter("crossover_rate", "float", low=0.0, high=1.0, default=0.9, doc="CR, binomial crossover"),
    ),
    params=lambda traced: {**_pick("crossover_rate", "differential_weight")(traced),
                           "elitism": traced["base_vector"] == 1},
    strategy=("num_diff",),
    doc="Differential evolution (Storn & Price 1997), evosax.algorithms.DifferentialEvolution",
)

GA = population_algorithm(
    "ga", "SimpleGA",
    (
        hyperparameter("population_size", "categorical", choices=(8, 16, 32, 64), default=32, grouped=True,
                       doc="population size (the best half are the parents)"),
        hyperparameter("mutation_std", "log-float", low=1e-3, high=10.0, default=1.0,
                       doc="σ of the Gaussian mutation (evosax's constant std_schedule, 1.0)"),
        hyperparameter("crossover_rate", "float", low=0.0, high=1.0, default=0.0,
                       doc="per-gene probability of taking the second parent's gene (uniform crossover)"),
    ),
    params=_pick("crossover_rate"),
    scale="mutation_std",
    doc="Simple genetic algorithm (Such et al. 2017), evosax.algorithms.SimpleGA",
)

PSO = population_algorithm(
    "pso", "PSO",
    (
        hyperparameter("population_size", "categorical", choices=(8, 16, 32, 64), default=32, grouped=True,
                       doc="swarm size"),
        hyperparameter("inertia_coeff", "float", low=0.0, high=1.2, default=0.75, doc="w, velocity momentum"),
        hyperparameter("cognitive_coeff", "float", low=0.0, high=3.0, default=1.5, doc="c1, pull to personal best"),
        hyperparameter("social_coeff", "float", low=0.0, high=3.0, default=2.0, doc="c2, pull to global best"),
    ),
    params=_pick("inertia_coeff", "cognitive_coeff", "social_coeff"),
    doc="Particle swarm optimisation (Kennedy & Eberhart 1995), global topology, evosax.algorithms.PSO",
)


# ------------------------------------------------------------------------------------------------------- SA

def _run_sa(static, traced, key, objective, data, *, low, high, dimension, evaluations):
    from evosax.algorithms import SimulatedAnnealing

    population_size = static["population_size"]
    _check_budget("sa", population_size, evaluations)
    es = _strategy(SimulatedAnnealing, population_size, dimension)
    params = es.default_params.replace(temperature_init=traced["temperature_init"],
                                       temperature_decay=traced["temperature_decay"],
                                       boltzmann_constant=traced["boltzmann_constant"])
    scale = traced["step_size"]
    key_init, key_es, key_gen = jax.random.split(key, 3)
    x0 = jax.random.uniform(key_init, (dimension,), minval=low, maxval=high)
    fitness_fn = jax.vmap(lambda y: objective(data, scale * y))
    state = es.init(key_es, x0 / scale, params)

    def generation(state, k):
        k_ask, k_tell = jax.random.split(k)
        y, state = es.ask(k_ask, state, params)
        state, _ = es.tell(k_tell, y, fitness_fn(y), state, params)
        return state, None

    state, _ = jax.lax.scan(generation, state, jax.random.split(key_gen, evaluations // population_size))
    return state.best_fitness


SA = Algorithm(
    name="sa",
    hyperparameters=(
        hyperparameter("population_size", "categorical", choices=(1, 4, 16), default=4, grouped=True,
                       doc="Gaussian proposals per step (the best one faces the Metropolis test)"),
        hyperparameter("step_size", "log-float", low=1e-3, high=10.0, default=1.0,
                       doc="σ of the Gaussian proposal (evosax's constant std_schedule, 1.0)"),
        hyperparameter("temperature_init", "log-float", low=1e-3, high=1e3, default=1.0, doc="T0"),
        hyperparameter("temperature_decay", "float", low=0.9, high=1.0, default=0.999, doc="T <- decay * T"),
        hyperparameter("boltzmann_constant", "log-float", low=1e-2, high=1e2, default=5.0,
                       doc="k in the acceptance probability exp(-Δ / (k T))"),
    ),
    run=_run_sa,
    doc="Simulated annealing (Rere et al. 2015), evosax.algorithms.SimulatedAnnealing",
)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (DE, GA, PSO, SA)}
"""The registry: ``de``, ``ga``, ``pso``, ``sa``."""


def get_algorithm(name: str | Algorithm) -> Algorithm:
    """The registered algorithm called ``name`` (an :class:`Algorithm` passes through).

    Raises:
        ArgumentError: unknown name.

    >>> from jeq.tune import get_algorithm
    >>> get_algorithm("pso").name
    'pso'
    >>> get_algorithm("cma")
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.tune.get_algorithm(name='cma'): must be one of ['de', 'ga', 'pso', 'sa']
    """
    if isinstance(name, Algorithm):
        return name
    validate.one_of("jeq.tune.get_algorithm", "name", name, ALGORITHMS)
    return ALGORITHMS[name]

