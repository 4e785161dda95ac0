"""A run's result (what result.json holds), each learned unknown's error bar and the warning that it is not
identified well, and the line that prints it; from numbers and arrays only (a metrics table: a structured array
or a dict of arrays).

result.json's keys, in order:

- ``problem``, ``model``; ``steps`` (trained), ``target_steps``, ``lbfgs_steps`` (L-BFGS iterations run, 0 for
  none); ``seconds`` (training time), ``compile_seconds`` (of it, torch.compile's); ``device``, ``backend``,
  ``world_size`` (processes);
- for each learned unknown ``<name>`` (Burgers: ``nu``): ``<name>_init``, ``<name>_warmup`` (steps held at the
  init), ``<name>_window`` (first and last step of the averaging window, or null), ``<name>`` (the window's
  mean; an ensemble's: its members' mean), ``<name>_std``, ``<name>_last`` (the final iterate; after L-BFGS: the
  Adam run's), ``<name>_drift`` (between the window's halves); an ensemble's ``<name>_members`` and
  ``<name>_spread``; after L-BFGS ``<name>_lbfgs``; when the truth is known ``<name>_true``, ``<name>_error`` and
  after L-BFGS ``<name>_lbfgs_error``; then ``<name>_sigma`` (the error bar, or null) and ``<name>_warning``
  (or null);
- the final losses ``loss``, ``loss_r``, ``loss_<term>`` for each term;
- the data fit, ``rmse_<output>`` (``rmse_<condition>_<output>`` for several conditions with data);
- ``data`` (the data file, or null) and ``data_sha256``, for runs with data;
- ``version``.
"""
import math

import numpy as np

from .names import symbol
from .stopping import drift, moves, moving_at_the_cap

RAN_OFF = 1e6  # an unknown this many times smaller or larger than its initial value collapsed or ran off


def window(table, config):
    """The averaging window: the last ``average_last`` rows after the warm-up (empty before any training)."""
    if table is None:
        return []
    return table[table["step"] > config.nu_warmup][-config.average_last:]


def result(config, table, *, step, seconds, compile_seconds, device, backend, world, unknowns, logged, lbfgs_done,
           error_samples, jackknife, data_fit, data, version):
    """The run's summary (the keys above): each learned unknown as the mean (and standard deviation) over its
    averaging window, with the window, its final iterate, its error bar and warning; the final losses and the data
    fit. ``table``: the metrics (None before any step); ``unknowns``: ``{name: (init, truth or None)}``;
    ``logged``: the last logged value of each column (``<name>``, an ensemble's ``<name>_<k>`` too) as floats;
    ``error_samples``: ``[step, {name: [error per member]}]``; ``jackknife()``: those errors for the network as it
    is now (called when no sample falls in the window)."""
    summary = {"problem": config.problem, "model": config.model, "steps": step, "target_steps": config.steps,
               "lbfgs_steps": config.lbfgs_steps if lbfgs_done else 0, "seconds": seconds,
               "compile_seconds": compile_seconds, "device": device, "backend": backend, "world_size": world}
    if unknowns:
        rows = window(table, config)
        summaries = {name: unknown_summary(name, rows, config, logged, init, truth, lbfgs_done)
                     for name, (init, truth) in unknowns.items()}
        add_error_bars(summaries, rows, config, error_samples, jackknife)
        capped = moving_at_the_cap(table, config, unknowns, step) if table is not None else {}
        for name, entries in summaries.items():
            entries[f"{name}_warning"] = identification_warning(name, entries, config, capped.get(name))
            summary.update(entries)
    if table is not None:
        last = table[-1]
        summary.update({name: float(last[name]) for name in table.dtype.names if name.startswith("loss")})
    summary.update(data_fit)
    if data is not None:
        summary.update(data=data["path"], data_sha256=data["sha256"])
    summary["version"] = version
    return summary


def unknown_summary(name, window, config, logged, init, truth, lbfgs_done):
    """An unknown's entries up to its error bar (see the module's list); ``window``: the averaging window's rows."""
    summary = {f"{name}_init": init, f"{name}_warmup": config.nu_warmup,
               f"{name}_window": [int(window["step"][0]), int(window["step"][-1])] if len(window) else None}
    columns = [name] + ([] if config.members is None else [f"{name}_{k}" for k in range(config.members)])
    means = [float(window[c].mean()) if len(window) else logged[c] for c in columns]
    drifts = [drift(window[c]) if len(window) >= 2 else None for c in columns]
    summary.update({name: means[0], f"{name}_std": float(window[name].std()) if len(window) else 0.0,
                    f"{name}_last": logged[name], f"{name}_drift": drifts[0]})
    if config.members is not None:  # one value per member: their mean is reported, their spread the error bar
        summary.update({name: float(np.mean(means[1:])), f"{name}_members": means[1:],
                        f"{name}_spread": float(np.std(means[1:], ddof=1)),
                        f"{name}_drift": None if drifts[1] is None else max(drifts[1:], key=abs)})
    if lbfgs_done:  # the Adam window as above; the L-BFGS finish's value beside it
        summary.update({f"{name}_last": float(window[name][-1]), f"{name}_lbfgs": logged[name]})
    if truth is not None:
        summary.update({f"{name}_true": truth, f"{name}_error": (summary[name] - truth) / truth})
        if lbfgs_done:
            summary[f"{name}_lbfgs_error"] = (summary[f"{name}_lbfgs"] - truth) / truth
    return summary


def add_error_bars(summaries, window, config, error_samples, jackknife):
    """Each unknown's error bar ``<name>_sigma``: the jackknife standard error over the box's sub-boxes
    (:func:`~pinnfast.uncertainty.subdomain_jackknife`), its samples in the averaging ``window`` (one every
    ``ERROR_EVERY`` steps; none there, as in a short run: ``jackknife()``, the network as it is now) and an
    ensemble's members averaged in square, combined for an ensemble with the members' spread (root of the sum of
    squares). On the regime sweep ±σ held the truth in 14 of 22 cases and ±2σ in 21 (BENCHMARKS.md). ``None``
    before any training, or when the residual does not depend on the unknown."""
    if not len(window):
        for name, summary in summaries.items():
            summary[f"{name}_sigma"] = None
        return
    first, last = window["step"][0], window["step"][-1]
    samples = [errors for step, errors in error_samples if first <= step <= last] or [jackknife()]
    for name, summary in summaries.items():
        squares = [error ** 2 for errors in samples for error in errors[name]]
        sigma = math.sqrt(sum(squares) / len(squares))
        if config.members is not None:
            sigma = math.hypot(sigma, summary[f"{name}_spread"])
        summary[f"{name}_sigma"] = sigma if math.isfinite(sigma) else None  # None: the residual ignores it


def identification_warning(name, summary, config, drift_at_cap=None):
    """Why the reported value of unknown ``name`` may be off by more than ``tol``, or None: its error bar
    (``_sigma``; an ensemble's includes the members' spread) is wider than ``tol``, or it still moved by more
    than ``tol / 4`` between the two halves of its averaging window, or ``max_steps`` ended the run while it
    still moved by the settle check's measure (``drift_at_cap``) (BENCHMARKS.md: on the regime sweep every
    clean case that ended more than 1 % off had an error bar above 1 %), or it collapsed towards 0 or ran off
    (more than ``RAN_OFF`` times smaller or larger than its initial value)."""
    tol, reasons, advice, who = config.tol, [], [], symbol(name)
    value, sigma, moved = summary[name], summary[f"{name}_sigma"], summary[f"{name}_drift"]
    if summary[f"{name}_window"] is not None and not (sigma is not None and sigma <= tol * abs(value)):
        if sigma is None:
            reasons.append(f"the residual does not change with {who}")
        else:
            why = f"the sub-boxes of the domain ask for different values of {who}"
            if config.members is not None:
                why = (f"the {config.ensemble} ensemble members disagree by "
                       f"{_relative(summary[f'{name}_spread'], value)} (standard deviation), and {why}")
            reasons.append(f"its error bar is {_relative(sigma, value)} ({why})")
        advice.append(f"more data, or less noisy data, or data where {who} matters more (sharper fields)")
    more_steps = "more steps (resume the run with a higher --steps)"
    if moved is not None and moves(moved, tol):
        first, last = summary[f"{name}_window"]
        reasons.append(f"{who} was still moving ({100 * moved:+.2g} % between the halves of its "
                       f"averaging window, steps {first}–{last})")
        advice.append(more_steps)
    init = summary.get(f"{name}_init")
    if summary[f"{name}_window"] is not None and init and not 1 / RAN_OFF <= abs(value / init) <= RAN_OFF:
        reasons.append(f"{who} went from its initial {init:.3g} to {value:.3g}, "
                       f"{'collapsing towards 0' if abs(value) < abs(init) else 'running off'}")
        advice.append(f"a smaller learning rate of {who} (--nu-lr) or an initial value nearer the truth")
    if drift_at_cap is not None:
        reasons.append(f"--max-steps ({config.max_steps}) ended the run while {who} still moved "
                       f"({100 * drift_at_cap:+.2g} % between the last two quarters of the run)")
        if more_steps not in advice:
            advice.append(more_steps)
    if not reasons:
        return None
    if config.members is None:
        advice.append("an ensemble (--ensemble 4) to see the spread")
    return (f"{who} is not identified well by these data: {' and '.join(reasons)}, against the requested "
            f"accuracy of {100 * tol:g} % (tol); treat {who} = {value:.4g} as uncertain to that extent, and try "
            f"{' or '.join(advice)}")


def _relative(error, value):
    """An error as a percentage of ``value`` (``±3.2 %``), or as it is when the value is 0."""
    return f"±{100 * error / abs(value):.2g} %" if value else f"±{error:.2g}"


def nu_message(result, name="nu"):
    """``nu = … ± …`` (any unknown's ``name = … ± …``) with the steps it was averaged over, or a warning that it
    never left its initial value."""
    warmup = result[f"{name}_warmup"]
    if result[f"{name}_window"] is None:
        return (f"{name} = {result[name]:.6g}: {symbol(name)} was held at its initial value for the whole run "
                f"(warm-up of {warmup} steps); train longer")
    first, last = result[f"{name}_window"]
    sigma = result.get(f"{name}_sigma")
    bar = f" ± {sigma:.2g}" if sigma is not None else ""
    if f"{name}_spread" in result:
        text = (f"{name} = {result[name]:.6g}{bar} (error bar: the {len(result[f'{name}_members'])} ensemble "
                f"members' spread ± {result[f'{name}_spread']:.2g} with their sub-box error; each averaged over steps "
                f"{first}–{last} after a {warmup}-step warm-up)")
    else:
        text = (f"{name} = {result[name]:.6g}{bar} (error bar from the sub-boxes of the domain; mean over steps "
                f"{first}–{last} after a {warmup}-step warm-up, jitter ± {result[f'{name}_std']:.2g}; last iterate "
                f"{result[f'{name}_last']:.6g})")
    if f"{name}_true" in result:
        text += f"; true {result[f'{name}_true']:.6g}: error {100 * result[f'{name}_error']:+.2f} %"
    if f"{name}_lbfgs" in result:
        text += f"; after {result['lbfgs_steps']} L-BFGS iterations: {name} = {result[f'{name}_lbfgs']:.6g}"
        if f"{name}_lbfgs_error" in result:
            text += f" ({100 * result[f'{name}_lbfgs_error']:+.2f} %)"
    return text
