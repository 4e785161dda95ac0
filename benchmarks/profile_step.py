"""Where one training step's time goes: the torch profiler over a few `Trainer.train_step` calls, and its parts.

    python3 benchmarks/profile_step.py                       # GPU: M4, annealing every step, Nr=16384, Nd=2048
    python3 benchmarks/profile_step.py --device cpu --backend torch --nr 512 --nd 512 --width 32 --depth 3

Prints (1) the step's wall time with and without a host synchronisation per step, and the GPU time its kernels
take (their sum, from the profiler): wall ≫ kernels means launch- or host-bound; (2) the parts timed alone — the
residual loss forward and backward, the data loss forward and backward, the optimiser step; (3) the profiler's
table of the most expensive operators and kernels with their call counts (kernel launches per step).
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import pinnfast as pf


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def wall_ms(fn, device, calls, sync_each):
    """Mean wall milliseconds per call over ``calls`` calls (after two warm-up calls)."""
    fn(), fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
        if sync_each:
            synchronize(device)
    synchronize(device)
    return (time.perf_counter() - start) / calls * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backend", default="triton", choices=("triton", "torch"))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--nr", type=int, default=16384, help="collocation points per step")
    parser.add_argument("--nd", type=int, default=2048, help="observations per step")
    parser.add_argument("--anneal-period", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--cuda-graphs", action="store_true", help="replay the step as CUDA graphs")
    parser.add_argument("--rows", type=int, default=25, help="rows of the profiler's table")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = pf.TrainConfig(model="m4", width=args.width, depth=args.depth, n_collocation=args.nr,
                            batch_size=args.nd, anneal_period=args.anneal_period, nu_warmup=0, backend=args.backend,
                            cuda_graphs=args.cuda_graphs)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pf.Trainer(pf.make_observations(0.02, args.nd, seed=0), config, Path(tmp) / "run", device.type)
        problem, generator = trainer.problem, trainer.generator
        print(f"{device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), backend "
              f"{args.backend}, W={args.width} L={args.depth}, Nr={args.nr}, Nd={args.nd}, "
              f"anneal every {args.anneal_period}")
        step = trainer.train_step
        print(f"step, no sync:          {wall_ms(step, device, args.calls, False):8.3f} ms")
        print(f"step, sync each:        {wall_ms(step, device, args.calls, True):8.3f} ms")
        batch = problem.sample(generator)
        unknowns = problem.unknown_values()
        params = trainer.params

        def residual_forward():
            return problem.residual_loss(batch["collocation"], unknowns)

        def residual_both():
            torch.autograd.grad(problem.residual_loss(batch["collocation"], problem.unknown_values()).sum(), params,
                                allow_unused=True)

        def everything_forward():
            return problem.losses(problem.sample(generator))

        print(f"sample:                 {wall_ms(lambda: problem.sample(generator), device, args.calls, True):8.3f} ms")
        with torch.no_grad():
            print(f"residual loss fwd:      {wall_ms(residual_forward, device, args.calls, True):8.3f} ms")
        print(f"residual loss fwd+bwd:  {wall_ms(residual_both, device, args.calls, True):8.3f} ms")
        print(f"sample + losses fwd:    {wall_ms(everything_forward, device, args.calls, True):8.3f} ms")
        for p in params:
            p.grad = torch.zeros_like(p)
        print(f"optimizer step:         {wall_ms(trainer.optimizer.step, device, args.calls, True):8.3f} ms")
        trainer.optimizer.zero_grad(set_to_none=True)

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        synchronize(device)
        with profile(activities=activities) as prof:
            for _ in range(10):
                step()
            synchronize(device)
        events = prof.key_averages()
        if device.type == "cuda":
            kernels = sum(e.self_device_time_total for e in events) / 10 / 1e3
            launches = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA) / 10
            print(f"GPU kernel time per step (sum): {kernels:.3f} ms, ~{launches:.0f} kernels per step")
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
