"""``pinnfast`` command line: make synthetic Burgers data, infer ν from observations, use the trained run,
diagnose its gradients, and train a problem of your own (a pinnfast.PDE from a Python file)."""
import contextlib
import gc
import os
import sys
import warnings

from . import distributed
from .cli_options import parser
from .commands import COMMANDS, Interrupted
from .errors import PinnfastError, PinnfastWarning, TrainingDiverged

INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C
DISTRIBUTED = ("infer", "reproduce", "residual-field")  # the commands that run on several processes


def _parser():
    return parser(__doc__)


def _show_note(message, category, filename, lineno, file=None, line=None):
    """PinnfastWarning as one line on stderr; every other warning as Python shows it."""
    if issubclass(category, PinnfastWarning):
        print(f"pinnfast: note: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def command():
    """The ``pinnfast`` program (and ``python -m pinnfast``): :func:`main`, whose exit code it returns, then
    ``gc.freeze()``, so that Python's shutdown no longer runs the garbage collector over the 300,000 objects that
    torch, its compiler stack and matplotlib leave alive: 0.7–0.9 s of the main job on the 2-core CPU
    (BENCHMARKS.md), spent on nothing the command needs (every file it wrote is closed by then). Exit handlers
    still run, and objects still go when their last reference does. Not in :func:`main`, which tests and scripts
    call in a process that goes on. A process that torchrun started leaves at once (``os._exit``, after flushing
    its output): its process group is gone and its files closed by then, and the C++ runtime's teardown of gloo's
    threads has aborted finished runs ("terminate called without an active exception", exit 134)."""
    code = main()
    if distributed.launched():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    gc.freeze()
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    nproc = getattr(args, "nproc", None)
    if nproc is not None and nproc > 1 and not distributed.launched():
        return distributed.launch(nproc, argv)
    with warnings.catch_warnings(), distributed.joined() as ranks, _speaking(ranks.main):
        warnings.showwarning = _show_note
        warnings.simplefilter("always" if ranks.main else "ignore", PinnfastWarning)
        code, message = _command(args, ranks)
        if message is not None and ranks.main:
            print(message, file=sys.stderr)
    return code


def _command(args, ranks):
    """Run the command: its exit code, and the line that says why it stopped (None when it did not)."""
    try:
        if ranks.world > 1 and args.command not in DISTRIBUTED:
            raise PinnfastError(f"{args.command} runs in one process; start it without torchrun")
        nproc = getattr(args, "nproc", None)
        if nproc is not None and nproc != ranks.world:
            raise PinnfastError(f"--nproc {nproc}, but torchrun started {ranks.world} processes; leave --nproc out "
                                "under torchrun")
        COMMANDS[args.command](args)
    except TrainingDiverged as exc:
        return 3, f"pinnfast: {exc}"
    except PinnfastError as exc:
        return 2, f"pinnfast: error: {exc}"
    except Interrupted as exc:
        return INTERRUPTED, f"pinnfast: {exc}"
    except KeyboardInterrupt:
        return INTERRUPTED, "pinnfast: interrupted"
    except OSError as exc:  # a path the system refuses: permissions, a full disk, a file where a folder goes
        where = f"{exc.filename}: " if exc.filename else ""
        return 2, f"pinnfast: error: {where}{exc.strerror or exc}"
    return 0, None


@contextlib.contextmanager
def _speaking(main):
    """Rank 0 speaks for the run: another rank's printed output is dropped (its notes and errors too, by the
    caller); every rank reads the same input, so rank 0 meets the same problems."""
    if main:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


if __name__ == "__main__":
    sys.exit(command())
