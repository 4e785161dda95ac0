"""The stopping rules and the report, fed metrics as arrays: no trainer, no files."""
import math

import numpy as np
import pytest

import pinnfast as pf
from pinnfast import report, stopping


def _table(nu, loss_d, **columns):
    """A metrics table (dict of arrays) with these ν and data-loss histories, steps from 1."""
    return {"step": np.arange(1, len(nu) + 1, dtype=float), "nu": np.asarray(nu, float),
            "loss": np.full(len(nu), 1.0), "loss_d": np.asarray(loss_d, float), **columns}


def _config(**fields):
    return pf.TrainConfig(**{"steps": 5000, "average_last": 100, "nu_warmup": 10, "tol": 0.01, "max_steps": 15000,
                             **fields})


def test_settled_means_nu_still_and_data_loss_flat():
    """The early end's test on the run's second half (tol 1 %: ν may move 0.25 % between its quarters; the data
    loss may fall at most 10 %), against histories made to pass or fail each condition."""
    n = 400
    flat, steps = np.full(n, 1e-4), np.arange(n)
    rng = np.random.default_rng(0)
    cases = {"still": (0.02 * (1 + 1e-3 * rng.standard_normal(n)), flat, True),
             "moving": (0.02 * (1 + 1e-4 * steps), flat, False),  # +0.5 % between the halves
             "loss falling": (np.full(n, 0.02), 1e-4 * 0.99 ** steps, False),  # −40 % between the halves
             "window not full": (np.full(n, 0.02)[:60], flat[:60], False)}
    for name, (nu, loss_d, expected) in cases.items():
        assert stopping.settled(_table(nu, loss_d), _config(), ["nu"], ["d"]) == expected, name


def test_a_structured_array_reads_as_a_dict_of_arrays():
    nu = 0.02 * (1 + 1e-4 * np.arange(400))
    table = _table(nu, np.full(400, 1e-4))
    array = np.rec.fromarrays(list(table.values()), names=list(table)).view(np.ndarray)
    assert stopping.settled(array, _config(), ["nu"], ["d"]) is stopping.settled(table, _config(), ["nu"], ["d"])
    assert stopping.next_target(array, _config(steps=400), ["nu"]) == stopping.next_target(table, _config(steps=400),
                                                                                          ["nu"])


def test_the_target_is_raised_while_nu_creeps_over_the_second_half():
    """At the target the extension asks the settle check's question: ν that crept by 2 % over steps 200–300 and then
    stayed flat over the averaging window (100 steps, whose halves agree) still moves between the quarters of the
    run's second half, so the target is raised by half, up to max_steps; ν flat throughout ends the run."""
    steps, flat = np.arange(400), np.full(400, 1e-4)
    creep = 0.02 * (1 + 0.02 * np.clip((steps - 200) / 100, 0, 1))
    assert stopping.drift(creep[-100:]) == 0.0  # the averaging window's halves see nothing
    target, name, drift = stopping.next_target(_table(creep, flat), _config(steps=400, max_steps=1000), ["nu"])
    assert (target, name) == (600, "nu") and drift > 0.0025
    assert stopping.next_target(_table(creep, flat), _config(steps=400, max_steps=500), ["nu"])[0] == 500
    assert stopping.next_target(_table(np.full(400, 0.02), flat), _config(steps=400), ["nu"]) is None
    for config in (_config(steps=400, max_steps=400), _config(steps=400, stop_when_settled=False)):
        assert stopping.next_target(_table(creep, flat), config, ["nu"]) is None


def test_an_ensemble_moves_with_its_fastest_member():
    n, flat = 400, np.full(400, 1e-4)
    still, creeping = np.full(n, 0.02), 0.02 * (1 + 1e-4 * np.arange(n))
    table = _table(np.full(n, 0.02), flat, nu_0=still, nu_1=creeping)
    config = _config(steps=400, ensemble=2)
    assert not stopping.settled(table, config, ["nu"], ["d"])
    assert stopping.next_target(table, config, ["nu"])[1] == "nu"
    moving = stopping.moving_at_the_cap(table, _config(steps=400, max_steps=400, ensemble=2), ["nu"], step=400)
    assert list(moving) == ["nu"] and moving["nu"] == stopping.quarter_drifts(
        stopping.second_half(table, config), ["nu"], 2)[1][1]
    assert stopping.moving_at_the_cap(table, _config(steps=400, max_steps=600, ensemble=2), ["nu"], step=400) == {}


def test_checks_fall_at_the_first_flush_past_each_multiple():
    """Metrics flushed every 30 steps: the settle check falls at 510 (the first flush past 500), 1020, …; from
    min_steps on only, and never for a fixed-length run."""
    config = _config(checkpoint_every=30, min_steps=500)
    due = [step for step in range(30, 1600, 30) if stopping.settle_check_due(step, config)]
    assert due == [510, 1020, 1500]
    assert not any(stopping.settle_check_due(step, _config(checkpoint_every=30, min_steps=600)) for step in (510,))
    assert not stopping.settle_check_due(510, _config(checkpoint_every=30, stop_when_settled=False))
    errors = _config(checkpoint_every=50, steps=2000, min_steps=3000, average_last=1000)
    assert [step for step in range(50, 2001, 50) if stopping.error_sample_due(step, errors)] == [1250, 1500, 1750,
                                                                                                2000]


def _summary(decay=20, **config):
    """A report of a 300-step run whose ν falls to 0.021 from 0.05 (truth 0.02) over ``decay`` steps, with one
    error sample per 50 steps of 0.001."""
    n = 300
    nu = 0.021 + 0.029 * np.exp(-np.arange(n) / decay)
    table = np.rec.fromarrays([np.arange(1, n + 1, dtype=float), nu, np.full(n, 2.0), np.full(n, 1.0),
                               np.full(n, 0.5)], names=["step", "nu", "loss", "loss_r", "loss_d"]).view(np.ndarray)
    config = pf.TrainConfig(**{"steps": n, "nu_warmup": 20, "average_last": 100, "tol": 0.1, "max_steps": 900,
                               **config})
    samples = [[step, {"nu": [0.001]}] for step in range(50, n + 1, 50)]
    return report.result(config, table, step=n, seconds=1.5, compile_seconds=0.0, device="cpu", backend="torch",
                         world=1, unknowns={"nu": (0.05, 0.02)}, logged={"nu": float(nu[-1])}, lbfgs_done=False,
                         error_samples=samples, jackknife=lambda: pytest.fail("a sample is in the window"),
                         data_fit={"rmse_u": 0.1}, data={"path": None, "sha256": "ab"}, version="9")


def test_the_report_summarises_the_window():
    result = _summary()
    assert list(result)[:10] == ["problem", "model", "steps", "target_steps", "lbfgs_steps", "seconds",
                                 "compile_seconds", "device", "backend", "world_size"]
    assert result["nu_window"] == [201, 300] and result["nu_warmup"] == 20 and result["nu_init"] == 0.05
    window = 0.021 + 0.029 * np.exp(-np.arange(200, 300) / 20)
    assert result["nu"] == pytest.approx(window.mean(), rel=1e-12) and result["nu_last"] == window[-1]
    assert result["nu_error"] == pytest.approx((window.mean() - 0.02) / 0.02)
    assert result["nu_sigma"] == pytest.approx(0.001)  # the samples at 250 and 300
    assert result["nu_warning"] is None and result["nu_drift"] < 0
    assert (result["loss"], result["loss_r"], result["loss_d"], result["rmse_u"]) == (2.0, 1.0, 0.5, 0.1)
    assert (result["data"], result["data_sha256"], result["version"]) == (None, "ab", "9")


def test_the_identification_warning_gives_each_reason():
    wide = _summary(tol=0.01)["nu_warning"]  # σ = 0.001 is 4.8 % of ν
    assert wide.startswith("ν is not identified well by these data: its error bar is ±4.8 % (the sub-boxes")
    assert "against the requested accuracy of 1 % (tol)" in wide and "an ensemble (--ensemble 4)" in wide
    capped = _summary(100, max_steps=300)["nu_warning"]  # the cap ended the run while ν still crept
    assert "--max-steps (300) ended the run while ν still moved" in capped
    summary = {"nu": 1.0, "nu_sigma": None, "nu_drift": 0.0, "nu_window": [1, 2]}
    assert "the residual does not change with ν" in report.identification_warning("nu", summary, pf.TrainConfig())
    assert report.identification_warning("nu", dict(summary, nu_sigma=0.001), pf.TrainConfig()) is None


def test_error_bars_combine_samples_and_an_ensembles_spread():
    window = {"step": np.array([10.0, 20.0])}
    summaries = {"nu": {"nu_spread": 0.004}}
    samples = [[5, {"nu": [9.0, 9.0]}], [10, {"nu": [0.003, 0.001]}], [20, {"nu": [0.001, 0.001]}]]
    report.add_error_bars(summaries, window, pf.TrainConfig(ensemble=2), samples, None)
    assert summaries["nu"]["nu_sigma"] == pytest.approx(math.hypot(math.sqrt((9e-6 + 3e-6) / 4), 0.004))
    summaries = {"nu": {}}
    report.add_error_bars(summaries, window, pf.TrainConfig(), [], lambda: {"nu": [math.inf]})
    assert summaries["nu"]["nu_sigma"] is None  # the residual ignores ν
    report.add_error_bars(summaries, [], pf.TrainConfig(), [], None)
    assert summaries["nu"]["nu_sigma"] is None  # no training yet


def test_the_printed_line():
    assert report.nu_message(_summary()).startswith("nu = 0.0210")
    held = dict(_summary(), nu_window=None)
    assert report.nu_message(held).endswith("was held at its initial value for the whole run (warm-up of 20 "
                                            "steps); train longer")
