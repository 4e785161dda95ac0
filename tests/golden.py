"""Golden runs: short, small, seeded runs whose metrics.csv, result.json (less its timings) and a digest of the
checkpoint (each tensor's hash, sum and norm; every other value as it is) are stored under ``tests/golden/``, so that
a change to the trainer that should change nothing can be checked against them.

``python tests/golden.py --record`` writes the recordings; ``python tests/golden.py --check`` compares a fresh
run of every case with them exactly (metrics.csv byte for byte, tensor hashes equal), which holds on the machine
that recorded them; ``tests/test_golden.py`` compares with tolerances, as another machine's BLAS allows.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

import pinnfast as pf  # noqa: E402
from pinnfast.runfolder import METRICS_CSV, RESULT, load_checkpoint  # noqa: E402

GOLDEN = Path(__file__).with_name("golden")
TIMINGS = ("seconds", "compile_seconds")
BASE = dict(width=8, depth=1, n_collocation=32, batch_size=16, checkpoint_every=50, nu_warmup=20, average_last=50,
            steps=200, tol=0.5)
NU = 0.02  # the data's ν; every case starts at 0.05


def observations():
    return pf.make_observations(NU, 60, seed=2)


def _train(out, **config):
    return pf.Trainer(observations(), pf.TrainConfig(**{**BASE, **config}), out, "cpu").run(progress=False)


def m1(out):
    return _train(out, model="m1")


def m2(out):
    return _train(out, model="m2", anneal_period=5)


def m3(out):
    return _train(out, model="m3", seed=1)


def m4(out):
    return _train(out, model="m4", anneal_period=5)


def ensemble_bootstrap(out):
    return _train(out, model="m2", ensemble=2, bootstrap=True, anneal_period=5)


def float64(out):
    return _train(out, model="m4", dtype="float64", anneal_period=5)


def compiled(out):
    """The losses through inductor: the network and batch sizes of the default run, whose compile torch has cached
    once it has compiled them (about 25 s the first time on 2 cores, 3 s then)."""
    return _train(out, width=32, depth=3, n_collocation=512, batch_size=512, compile=True, steps=100,
                  anneal_period=5)


def lbfgs(out):
    return _train(out, model="m3", lbfgs_steps=20)


def early_settle(out):
    """ν and the data loss barely move at these learning rates: the run settles at the first check (step 500)."""
    return _train(out, model="m1", steps=2000, min_steps=500, tol=0.9, lr=1e-5, nu_lr=1e-5)


def extension(out):
    """ν still moves at the target (tol 0.001): the target is raised by half until the cap."""
    return _train(out, model="m3", steps=200, max_steps=400, tol=0.001)


def resumed(out):
    """m4's run cut after its checkpoint at step 100 and resumed from it: it must equal ``m4``."""
    config = pf.TrainConfig(**{**BASE, "model": "m4", "anneal_period": 5})
    trainer = pf.Trainer(observations(), config, out, "cpu")
    step = trainer.train_step

    def cut():
        if trainer.step == 100:
            raise KeyboardInterrupt
        return step()

    trainer.train_step = cut
    try:
        trainer.run(progress=False)
    except KeyboardInterrupt:
        pass
    again = pf.Trainer.resume(observations(), out, "cpu")
    assert again.step == 100
    return again.run(progress=False)


def two_ranks_infer(rank, folder):
    """The command line's infer of tests/test_distributed.py on this rank."""
    from pinnfast import cli
    from test_distributed import TINY

    return cli.main(["infer", "--data", str(folder / "obs.npz"), "--out", str(folder / "run"), *TINY])


def two_ranks(out):
    """tests/test_distributed.py's run: infer on two gloo processes (as torchrun would start them), on its data."""
    from test_distributed import _spawn

    out.mkdir(parents=True, exist_ok=True)
    pf.save_observations(out / "obs.npz", pf.make_observations(0.03, 60, seed=2))
    assert _spawn(two_ranks_infer, out) == [0, 0]
    for path in (out / "run").iterdir():
        path.rename(out / path.name)


CASES = {case.__name__: case for case in (m1, m2, m3, m4, ensemble_bootstrap, float64, compiled, lbfgs,
                                          early_settle, extension, resumed, two_ranks)}


def digest(value):
    """A JSON-able digest of a checkpoint's value: tensors by hash, dtype, shape, sum and norm."""
    if torch.is_tensor(value):
        data = value.detach().cpu().contiguous()
        number = data.double()
        return {"sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(), "dtype": str(data.dtype),
                "shape": list(data.shape), "sum": number.sum().item(), "norm": number.norm().item()}
    if isinstance(value, dict):
        return {str(key): digest(item) for key, item in value.items() if key not in TIMINGS}
    if isinstance(value, (list, tuple)):
        return [digest(item) for item in value]
    if isinstance(value, str) and os.sep in value:  # a file's absolute path: its name only
        return Path(value).name
    return value


def outputs(folder):
    """What a case wrote: its metrics.csv text, result.json less timings (paths as names) and checkpoint digest."""
    folder = Path(folder)
    result = json.loads((folder / RESULT).read_text()) if (folder / RESULT).exists() else None
    state = load_checkpoint(folder)
    state.pop("version", None)
    return {"metrics": (folder / METRICS_CSV).read_text(),
            "result": None if result is None else digest({k: v for k, v in result.items() if k != "version"}),
            "checkpoint": digest(state)}


def run_case(name, folder):
    """Run case ``name`` in ``folder`` (empty or missing) and return :func:`outputs`; a case run from Python
    returns its result, written here as the command line writes it."""
    from pinnfast.runfolder import write_result

    folder = Path(folder)
    result = CASES[name](folder)
    if result is not None:
        write_result(folder, result)
    return outputs(folder)


def recorded(name):
    folder = GOLDEN / name
    return {"metrics": (folder / METRICS_CSV).read_text(), "result": json.loads((folder / "result.json").read_text()),
            "checkpoint": json.loads((folder / "checkpoint.json").read_text())}


def _write(name, found):
    folder = GOLDEN / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_CSV).write_text(found["metrics"])
    (folder / "result.json").write_text(json.dumps(found["result"], indent=1, sort_keys=True) + "\n")
    (folder / "checkpoint.json").write_text(json.dumps(found["checkpoint"], indent=1, sort_keys=True) + "\n")


def main(argv):
    import tempfile

    mode, names = argv[0], argv[1:] or list(CASES)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            found = run_case(name, Path(tmp) / name)
            found = json.loads(json.dumps(found))  # as stored (tuples as lists)
            if mode == "--record":
                _write(name, found)
                print(f"recorded {name}")
            else:
                expected = recorded(name)
                same = {part: found[part] == expected[part] for part in found}
                verdicts = (f"{part} {'identical' if ok else 'DIFFERS'}" for part, ok in same.items())
                print(f"{name}: " + ", ".join(verdicts))
                if not all(same.values()):
                    failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
