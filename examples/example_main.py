"""The command line the example scripts share: train an example's problem with its settings, write the run folder
as `pinnfast train` does (result.json and training.png too), and print each unknown's error."""
import argparse
from pathlib import Path

import pinnfast as pf
from pinnfast.plots import plot_training
from pinnfast.runfolder import write_result


def main(doc, make_problem, settings, out, noise_help):
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, default=0.0, help=noise_help)
    parser.add_argument("--steps", type=int, default=settings["steps"])
    parser.add_argument("--out", default=out, help="run folder (replaced if it holds a run)")
    args = parser.parse_args()
    problem = make_problem(noise=args.noise)
    result = pf.Trainer(problem, pf.TrainConfig(**dict(settings, steps=args.steps)), args.out, overwrite=True).run()
    write_result(args.out, result)
    plot_training(Path(args.out) / "metrics.csv", Path(args.out) / "training.png", result)
    for name in problem.unknowns:
        print(f"{name} = {result[name]:.6g} (true {result[name + '_true']:.6g}): error "
              f"{100 * result[name + '_error']:+.3f} %")
    print(f"{result['steps']} steps in {result['seconds']:.0f} s on {result['device']}; run folder {args.out}")
