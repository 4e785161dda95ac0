"""Many processes, one run: two gloo processes spawned here stand in for `torchrun --nproc_per_node 2` (the real
launcher runs once, through --nproc). A 2-rank run equals a 1-rank run on the union of the ranks' batches, λ and ν
agree bit for bit across ranks, rank 0 alone writes, a rank that dies leaves the last whole checkpoint and the
run resumes from it exactly, and sharded evaluation equals unsharded."""
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast import cli, distributed, trainer
from pinnfast.runfolder import CHECKPOINT, METRICS_CSV, PLOT, RESULT, load_checkpoint, metrics_table
from helpers import SMALL, random_model, random_points, run_cli

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="needs torch.distributed with gloo")

WORLD, STEPS, N_POINTS = 2, 20, 101
CONFIG = dict(SMALL, steps=STEPS, anneal_period=5)  # four annealing updates in 20 steps
TINY = ["--width", "8", "--depth", "1", "--collocation", "32", "--batch-size", "16", "--checkpoint-every", "10",
        "--nu-warmup", "5", "--average-last", "10", "--tol", "0.5", "--anneal-period", "5", "--steps", str(STEPS),
        "--quiet"]  # CONFIG as options
RUN_FILES = {CHECKPOINT, METRICS_CSV, RESULT, PLOT}


def _spawn(target, *args, timeout=300):
    """``target(rank, *args)`` in WORLD fresh processes that join one gloo group as torchrun's would; their exit
    codes. Once one has failed, the others get a few seconds to notice before they are killed."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_as_rank, args=(rank, port, target, args)) for rank in range(WORLD)]
    for process in processes:
        process.start()
    deadline, grace = time.monotonic() + timeout, None
    while any(p.is_alive() for p in processes) and time.monotonic() < min(deadline, grace or deadline):
        if grace is None and any(p.exitcode not in (None, 0) for p in processes):
            grace = time.monotonic() + 20
        time.sleep(0.05)
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join()
    return [p.exitcode for p in processes]


def _as_rank(rank, port, target, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.joined():  # once for all the commands the target runs (each would join and leave again)
        code = target(rank, *args)
    sys.exit(code)


# ----------------------------------------------------------------- what the ranks run
def _train_evaluate_reproduce(rank, folder, seed):
    """The CLI's infer, residual-field and reproduce on this rank, with its final state and its sharded
    evaluation of random points saved apart for the checks."""
    run = trainer.Trainer.run

    def keeping_state(self, progress=True):
        result = run(self, progress)
        torch.save({"problem": self.problem.state_dict(), "lambdas": self.weights.lambdas}, folder / f"state{rank}.pt")
        return result

    trainer.Trainer.run = keeping_state
    codes = [cli.main(["infer", "--data", str(folder / "obs.npz"), "--out", str(folder / "run"), *TINY])]
    trainer.Trainer.run = run
    model, points = _evaluation_inputs(seed)
    requested = []

    def source(start, stop):
        requested.append((start, stop))
        return points[start:stop]

    torch.save({"fields": pf.evaluate_residuals(model, points, 0.03, chunk_size=16, shard=True),
                "squared_norm": pf.evaluate_residuals(model, points, 0.03, chunk_size=16, output="squared_norm",
                                                      shard=True),
                "total": pf.evaluate_residuals(model, source, 0.03, n=N_POINTS, chunk_size=16, output="total",
                                               shard=True),
                "requested": requested}, folder / f"evaluation{rank}.pt")
    codes.append(cli.main(["residual-field", "--run", str(folder / "run"), "--out", str(folder / "field"), "--grid",
                           "9", "--times", "0", "0.5", "--device", "cpu"]))
    codes.append(cli.main(["reproduce", "helmholtz", "--models", "m2", "--steps", "4", "--out",
                           str(folder / "repro"), "--device", "cpu", "--quiet"]))
    return max(codes)


def _die_in_second_checkpoint(rank, folder):
    """Rank 0 dies half-way through writing its second checkpoint (step 20), as if killed."""
    if rank == 0:
        save, saves = torch.save, []

        def dying(state, path):
            saves.append(path)
            save(state, path)
            if len(saves) == 2:
                Path(path).write_bytes(Path(path).read_bytes()[:1000])
                os._exit(9)

        torch.save = dying
    return cli.main(["infer", "--data", str(folder / "obs.npz"), "--out", str(folder / "died"), *TINY])


def _evaluation_inputs(seed):
    """The same random model (weights from the global stream, biases and box from the generator) and points in
    every process."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = random_model(pf.ModifiedMLP, 3, 2, 16, 2, True, generator, dtype=torch.float32)
    return model, random_points(model, N_POINTS, generator, dtype=torch.float32)


# ----------------------------------------------------------------- the checks
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One spawn of two ranks: a 20-step run, sharded evaluation, residual-field and reproduce."""
    folder = tmp_path_factory.mktemp("two_ranks")
    pf.save_observations(folder / "obs.npz", pf.make_observations(0.03, 60, seed=2))  # ν starts at 0.05
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"evaluation seed {seed}")
    assert _spawn(_train_evaluate_reproduce, folder, seed) == [0, 0]
    return folder, seed


def test_two_ranks_equal_one_rank_on_the_union_of_their_batches(two_ranks, tmp_path):
    folder, _ = two_ranks
    reference = pf.Trainer(pf.load_observations(folder / "obs.npz"), pf.TrainConfig(**CONFIG), tmp_path, "cpu")
    draw = reference.problem.sample
    streams = [torch.Generator().manual_seed(distributed.rank_seed(reference.config.seed, r)) for r in range(WORLD)]

    def union(_):
        batches = [draw(stream) for stream in streams]
        return {name: torch.cat([batch[name] for batch in batches], -2) for name in batches[0]}

    reference.problem.sample = union
    reference.run(progress=False)
    state = load_checkpoint(folder / "run")
    assert state["step"] == STEPS and state["world_size"] == WORLD
    for name, value in reference.problem.state_dict().items():
        torch.testing.assert_close(state["problem"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(state["weights"]["lambdas"], reference.weights.lambdas, rtol=1e-4, atol=0)
    ours, theirs = metrics_table(folder / "run"), metrics_table(tmp_path)
    for name in ("loss", "loss_r", "loss_d", "lambda_d", "nu"):  # the logged losses are the union's too
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-4, err_msg=name)


def test_two_ranks_repeat_the_golden_run(two_ranks):
    """The run's outputs against its recording (tests/golden.py's ``two_ranks``), within tolerances."""
    import golden
    from test_golden import assert_matches

    assert_matches(golden.outputs(two_ranks[0] / "run"), golden.recorded("two_ranks"), "two_ranks: ")


def test_lambda_nu_and_weights_agree_bit_for_bit_across_ranks(two_ranks):
    folder, _ = two_ranks
    first, second = (torch.load(folder / f"state{rank}.pt") for rank in range(WORLD))
    assert torch.equal(first["lambdas"], second["lambdas"])
    assert first["problem"].keys() == second["problem"].keys()
    for name in first["problem"]:
        assert torch.equal(first["problem"][name], second["problem"][name]), name


def test_rank_0_alone_writes_one_set_of_files(two_ranks):
    folder, _ = two_ranks
    assert {p.name for p in (folder / "run").iterdir()} == RUN_FILES
    assert metrics_table(folder / "run")["step"].tolist() == list(range(1, STEPS + 1))  # each row once
    assert pf.load_run(folder / "run").result["world_size"] == WORLD
    generators = load_checkpoint(folder / "run")["generators"]
    assert len(generators) == WORLD and not torch.equal(*generators)  # each rank its own stream
    assert sorted(p.name for p in (folder / "field").iterdir()) == ["field.npz", "field.png"]
    assert sorted(p.name for p in (folder / "repro").iterdir()) == [
        "helmholtz", "helmholtz_curves.png", "helmholtz_fields.png", "helmholtz_table.json", "helmholtz_table.md"]
    assert metrics_table(folder / "repro" / "helmholtz" / "m2")["step"].tolist() == [1, 2, 3, 4]


def test_sharded_evaluation_equals_unsharded(two_ranks):
    folder, seed = two_ranks
    model, points = _evaluation_inputs(seed)
    expected = pf.evaluate_residuals(model, points, 0.03, chunk_size=16)
    shares = [torch.load(folder / f"evaluation{rank}.pt") for rank in range(WORLD)]
    for share in shares:  # every rank gets the whole result
        torch.testing.assert_close(share["fields"], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(share["squared_norm"], expected[:, 2:].square().sum(1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(share["total"], expected[:, 2:].double().square().sum(), rtol=1e-5, atol=0)
    assert shares[0]["total"].item() == shares[1]["total"].item()
    half = -(-N_POINTS // WORLD)  # each rank generated its own share only, in chunks
    assert [share["requested"][0][0] for share in shares] == [0, half]
    assert [share["requested"][-1][1] for share in shares] == [half, N_POINTS]
    assert all(stop - start <= 16 for share in shares for start, stop in share["requested"])
    single = folder / "field1"
    assert cli.main(["residual-field", "--run", str(folder / "run"), "--out", str(single), "--grid", "9", "--times",
                     "0", "0.5", "--device", "cpu"]) == 0
    sharded, unsharded = np.load(folder / "field" / "field.npz"), np.load(single / "field.npz")
    for name in ("u", "v", "r_u", "r_v"):
        np.testing.assert_allclose(sharded[name], unsharded[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_dead_rank_leaves_the_last_whole_checkpoint_and_the_run_resumes_exactly(two_ranks, capsys):
    """Rank 0 dies writing the step-20 checkpoint: the step-10 one stays whole; one process may not resume it,
    two (started by --nproc through torchrun's launcher) continue it to the uninterrupted run's numbers."""
    folder, _ = two_ranks
    assert _spawn(_die_in_second_checkpoint, folder)[0] == 9
    died = folder / "died"
    half_written = list(died.glob(f".{CHECKPOINT}.*.tmp"))  # the atomic write's temporary file, cut short
    assert load_checkpoint(died)["step"] == 10 and [path.stat().st_size for path in half_written] == [1000]
    code, _, err = run_cli(["infer", "--out", str(died), "--resume"], capsys)
    assert code == 2 and err.strip() == (f"pinnfast: error: the run in {died} was trained by 2 process(es), not 1: "
                                         "resume it on 2 (torchrun --nproc_per_node 2, or --nproc 2), each process "
                                         "continuing its own random stream")
    root = Path(pf.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    resumed = subprocess.run([sys.executable, "-m", "pinnfast", "infer", "--out", str(died), "--resume", "--quiet",
                              "--nproc", "2"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"after {STEPS} steps" in resumed.stdout
    assert (died / METRICS_CSV).read_text() == (folder / "run" / METRICS_CSV).read_text()
    assert pf.load_run(died).result["nu"] == pf.load_run(folder / "run").result["nu"]
