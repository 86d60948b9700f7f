"""NAGO searches on optuna storages: BOHB prunes, a killed search resumes with exactly its budget, workers share a
study, and a real (tiny) training run scores a theta.

The orchestration tests (pruning, kill and resume, two workers) score theta with ``curve_evaluator`` below: a
deterministic learning curve of the sampled architecture, with a sleep per epoch standing in for training time, so
that a process can be killed mid-trial within seconds. Real training is tested by
``test_evaluate_theta_trains_a_sampled_network``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from jeq.nas import SearchConfig, evaluate_theta, open_storage, run_search, trial_log
from jeq.validate import ArgumentError

DRIVER = textwrap.dedent('''
    import sys, time
    from jeq.nas import Evaluation, SearchConfig, hparams_of, run_search, sample_architecture

    def curve_evaluator(config, theta, *, epochs, report):
        arch = sample_architecture(hparams_of(config.method, theta), seed=config.seed)
        accuracy = 0.0
        for epoch in range(1, epochs + 1):
            time.sleep(float(sys.argv[3]))
            accuracy = 1.0 - 1.0 / (epoch + arch.num_operations / 10.0)
            report(epoch, accuracy)
        return Evaluation(accuracy, arch.num_operations, epochs, arch.fingerprint())

    config = SearchConfig(method=sys.argv[2], trials=int(sys.argv[4]), min_epochs=1, max_epochs=4,
                          dataset="mnist5k", max_nodes=5, seed=int(sys.argv[5]))
    run_search(config, storage=sys.argv[1], study_name="study", evaluate=curve_evaluator, progress=False)
''')


def _driver(tmp_path, storage, method, sleep, trials, seed=0):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, str(script), storage, method, str(sleep), str(trials), str(seed)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=300):
    """Wait for a driver process; its exit code and stderr (pipes closed)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _study(storage):
    return optuna.load_study(study_name="study", storage=open_storage(storage))


def _finished(rows):
    return [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]


def test_bohb_search_completes_and_prunes_with_reduction_factor_2(tmp_path):
    storage = f"journal:{tmp_path / 'bohb.journal'}"
    proc = _driver(tmp_path, storage, "hnag-bohb", 0.0, 12)
    rc, err = _finish(proc)
    assert rc == 0, err
    rows = trial_log(_study(storage))
    assert len(_finished(rows)) == 12 and len(rows) == 12
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert pruned and all(r["epochs"] in (1, 2) for r in pruned)  # Hyperband rungs at 1 and 2 epochs (eta = 2)
    assert any(r["state"] == "COMPLETE" and r["epochs"] == 4 for r in rows)
    assert all(set(r["theta"]) == {"g1_nodes", "g1_k", "g1_p", "g2_nodes", "g2_p", "g3_nodes", "g3_k", "g3_p"}
               for r in rows)


def test_a_search_killed_mid_study_resumes_with_the_same_command_and_ends_with_exactly_the_budget(tmp_path):
    storage = f"journal:{tmp_path / 'rs.journal'}"
    proc = _driver(tmp_path, storage, "hnag-rs", 0.3, 6)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once two trials are finished and a third is running
        time.sleep(0.3)
        if (tmp_path / "rs.journal").exists():
            states = [t.state for t in _study(storage).get_trials(deepcopy=False)]
            if states.count(optuna.trial.TrialState.COMPLETE) >= 2 and states[-1].name == "RUNNING":
                break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    assert _finish(proc)[0] == -signal.SIGKILL
    killed = trial_log(_study(storage))
    assert killed[-1]["state"] == "RUNNING" and len(_finished(killed)) < 6
    again = _driver(tmp_path, storage, "hnag-rs", 0.0, 6)
    rc, err = _finish(again)
    assert rc == 0, err
    rows = trial_log(_study(storage))
    finished = _finished(rows)
    assert len(finished) == 6
    stale = [r for r in rows if r["failed_as"] == "stale"]
    assert len(stale) == 1 and stale[0]["number"] == killed[-1]["number"]
    # finished work is kept as it was, and the killed trial's theta was trained again (not lost, not repeated)
    before = stale[0]["number"]
    assert [r for r in rows if r["number"] < before] == [r for r in killed if r["number"] < before]
    if stale[0]["theta"]:
        retry = [r for r in finished if r["retry_of"] == stale[0]["number"]]
        assert len(retry) == 1 and all(retry[0]["theta"][k] == v for k, v in stale[0]["theta"].items())
    thetas = [tuple(sorted(r["theta"].items())) for r in finished]
    assert len(set(thetas)) == len(thetas)


def test_two_worker_processes_share_one_journal_study(tmp_path):
    storage = f"journal:{tmp_path / 'shared.journal'}"
    procs = [_driver(tmp_path, storage, "hnag-rs", 0.1, 8, seed=0), _driver(tmp_path, storage, "hnag-rs", 0.1, 8,
                                                                            seed=0)]
    for p in procs:
        rc, err = _finish(p)
        assert rc == 0, err
    study = _study(storage)
    rows = trial_log(study)
    assert len(_finished(rows)) == 8
    workers = {t.user_attrs["worker"]["pid"] for t in study.get_trials() if t.state.is_finished()}
    assert len(workers) == 2
    thetas = [tuple(sorted(r["theta"].items())) for r in _finished(rows)]
    assert len(set(thetas)) == len(thetas)


def test_mobo_returns_a_pareto_front_of_accuracy_and_parameters(tmp_path):
    from jeq.nas import Evaluation, hparams_of, sample_architecture

    def evaluator(config, theta, *, epochs, report):
        arch = sample_architecture(hparams_of(config.method, theta), seed=0)
        accuracy = 1.0 - 1.0 / (1.0 + arch.num_operations * theta["budget"] / 1e5)
        report(epochs, accuracy)
        return Evaluation(accuracy, int(theta["budget"]), epochs, arch.fingerprint())

    config = SearchConfig(method="hnag-mobo", trials=10, min_epochs=1, max_epochs=2, dataset="mnist5k",
                          max_nodes=5, budget=80_000)
    result = run_search(config, storage=f"journal:{tmp_path / 'mobo.journal'}", study_name="mobo",
                        evaluate=evaluator, progress=False)
    front = result.pareto
    assert front and len(_finished(result.trials)) == 10
    for a in front:  # no trial dominates a front member
        assert not any(r["accuracy"] >= a["accuracy"] and r["params"] <= a["params"]
                       and (r["accuracy"], r["params"]) != (a["accuracy"], a["params"]) for r in result.trials)


def test_evaluate_theta_trains_a_sampled_network():
    config = SearchConfig(method="hnag-bohb", trials=1, min_epochs=1, max_epochs=2, dataset="mnist5k",
                          min_mid_nodes=1, image_size=8, validation=500, budget=5_000, batch_size=100)
    theta = dict(g1_nodes=3, g1_k=2, g1_p=0.5, g2_nodes=1, g2_p=0.2, g3_nodes=3, g3_k=2, g3_p=0.5)
    curve = []
    result = evaluate_theta(config, theta, epochs=2, report=lambda e, a: curve.append((e, a)))
    assert [e for e, _ in curve] == [1, 2] and curve[-1][1] == result.accuracy
    assert result.accuracy > 0.3  # ten classes at 8 x 8 px: two epochs of SGD are well above chance (0.1)
    assert 0 < result.params <= 5_000


@pytest.mark.parametrize("kw,match", [
    (dict(dataset="imagenet"), r"jeq.nas.SearchConfig\(dataset='imagenet'\): must be one of"),
    (dict(method="bohb"), r"jeq.nas.SearchConfig\(method='bohb'\): must be one of"),
    (dict(min_epochs=4, max_epochs=2), r"jeq.nas.SearchConfig\(max_epochs=2\): must be an int >= 4"),
])
def test_bad_search_settings_raise_naming_the_value(kw, match):
    with pytest.raises(ArgumentError, match=match):
        SearchConfig(**kw)


@pytest.mark.parametrize("url", ["redis://localhost", "results/study.journal", "journal:", "oracle://x"])
def test_an_unknown_storage_url_is_an_error_naming_it(url):
    allowed = "must (be|name) (journal:PATH|a journal file)"
    with pytest.raises(ArgumentError, match=rf"jeq.nas.open_storage\(url='{url}'\): {allowed}"):
        open_storage(url)


def test_an_infeasible_theta_is_recorded_as_failed_and_not_counted(tmp_path):
    from jeq.nas import Evaluation

    def evaluator(config, theta, *, epochs, report):
        if theta["g1_nodes"] == 3:
            raise ValueError("no width fits the budget")
        report(epochs, 0.5)
        return Evaluation(0.5, 1000, epochs, "x")

    config = SearchConfig(method="hnag-rs", trials=6, min_epochs=1, max_epochs=1, dataset="mnist5k", max_nodes=4)
    result = run_search(config, storage=f"journal:{tmp_path / 'f.journal'}", study_name="f", evaluate=evaluator,
                        progress=False)
    failed = [r for r in result.trials if r["state"] == "FAIL"]
    assert len(_finished(result.trials)) == 6
    assert failed and all(r["theta"]["g1_nodes"] == 3 and "no width fits" in r["error"] for r in failed)
