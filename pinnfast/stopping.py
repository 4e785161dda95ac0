"""When a run ends: pure functions of its metrics table (a structured array, or a dict of arrays, one per CSV
column) and its config (a :class:`~pinnfast.config.TrainConfig`, or anything with the same fields).

The run may end before its target once it has settled, goes on past it while ν still moves (up to ``max_steps``),
and says so when the cap ended it while ν moved (regime sweep: BENCHMARKS.md). Every test looks at the run's second
half after the warm-up: in slow cases ν creeps with plateaus of a thousand steps, and while a clean data set is still
being fitted better ν can still move.
"""
import math

import numpy as np

DRIFT_FRACTION = 0.25  # ν "still moves" when its drift (between two spans of steps) exceeds this fraction of tol
SETTLE_EVERY = 500  # steps between the checks of whether a run has settled (each reads the metrics back)
ERROR_EVERY = 250  # steps between samples of ν's sub-box jackknife error (the error bar averages its window's)
LOSS_SETTLED = 0.9  # a data loss still falls when its median over the run's last quarter is below this × the one before


def drift(values):
    """How far a value still moved over a span: the mean of its second half minus that of its first half, relative
    to the whole span's mean (0 when it has settled; the sign says which way)."""
    half = len(values) // 2
    mean = abs(values.mean())
    change = values[half:].mean() - values[:half].mean()
    return float(change / mean) if mean else (0.0 if change == 0 else math.inf)  # a value collapsed to 0


def moves(value, tol):
    """Whether a drift (an unknown's relative change between two spans of steps) says that it still moves."""
    return abs(value) > DRIFT_FRACTION * tol


def due(step, every, checkpoint_every):
    """Whether the metrics flush at ``step`` is the first at or after a multiple of ``every`` steps."""
    return step // every > (step - checkpoint_every) // every


def settle_check_due(step, config):
    """Whether the flush at ``step`` checks for an early end: every ``SETTLE_EVERY`` steps from ``min_steps`` on (at
    the first flush at or after each multiple), unless the run trains a fixed number of steps."""
    return config.stop_when_settled and step >= config.min_steps and due(step, SETTLE_EVERY, config.checkpoint_every)


def error_sample_due(step, config):
    """Whether the flush at ``step`` samples the jackknife error: every ``ERROR_EVERY`` steps from where the first
    averaging window that the run can report may begin (the window before ``min_steps``, or before the target when
    that comes first)."""
    first_window = min(config.steps, config.min_steps) - config.average_last
    return step > first_window and due(step, ERROR_EVERY, config.checkpoint_every)


def columns(table):
    """A metrics table as ``{column: array}``."""
    names = table if isinstance(table, dict) else table.dtype.names
    return {name: np.asarray(table[name]) for name in names}


def second_half(table, config):
    """The columns over the second half of the run after the warm-up; None while shorter than the averaging
    window."""
    table = columns(table)
    trained = np.flatnonzero(table["step"] > config.nu_warmup)
    recent = trained[len(trained) // 2:]
    return {name: values[recent] for name, values in table.items()} if len(recent) >= config.average_last else None


def quarter_drifts(recent, unknowns, members=None):
    """``(unknown, drift)`` for every learned unknown (each ensemble member's of ``members``): how far its mean moved
    between the two quarters that make up the run's second half ``recent``."""
    suffixes = [""] if members is None else [f"_{k}" for k in range(members)]
    return [(name, drift(recent[name + suffix])) for name in unknowns for suffix in suffixes]


def settled(table, config, unknowns, terms):
    """Whether the run has settled: every learned unknown (each ensemble member's) moved by at most
    ``DRIFT_FRACTION × tol`` between the two quarters of the run's second half, and no data term's median loss
    (``loss_<term>`` of ``terms``) over the later quarter fell below ``LOSS_SETTLED`` times the earlier one's."""
    recent = second_half(table, config)
    if recent is None:
        return False
    moving = [moves(value, config.tol) for _, value in quarter_drifts(recent, unknowns, config.members)]
    half = len(recent["step"]) // 2
    falling = [np.median(recent[f"loss_{term}"][half:]) < LOSS_SETTLED * np.median(recent[f"loss_{term}"][:half])
               for term in terms]
    return not any(moving) and not any(falling)


def next_target(table, config, unknowns):
    """At the target, while an unknown still moves by the settle check's measure and ``max_steps`` allows: the
    target raised by half (10,000 → 15,000 → 22,500 → 30,000, at most ``max_steps``), with the unknown that moved
    most and its drift, as ``(target, name, drift)``; else None."""
    if not config.stop_when_settled or config.steps >= config.max_steps:
        return None
    recent = second_half(table, config)
    if recent is None:
        return None
    name, fastest = max(quarter_drifts(recent, unknowns, config.members), key=lambda item: abs(item[1]))
    if not moves(fastest, config.tol):
        return None
    return min(config.max_steps, config.steps + max(1, config.steps // 2)), name, fastest


def moving_at_the_cap(table, config, unknowns, step):
    """``{unknown: drift}`` (the most moving member's, for an ensemble) of the learned unknowns that still moved by
    the settle check's measure when ``max_steps`` ended the run at ``step``, so that the result says the cap, not
    ν, ended it; empty for any other end."""
    if not config.stop_when_settled or step < config.max_steps:
        return {}
    recent = second_half(table, config)
    moving = {}
    for name, value in [] if recent is None else quarter_drifts(recent, unknowns, config.members):
        if moves(value, config.tol) and abs(value) > abs(moving.get(name, 0.0)):
            moving[name] = value
    return moving
