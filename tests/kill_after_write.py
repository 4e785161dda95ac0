"""A run killed after each of its atomic writes, then resumed: ``python kill_after_write.py OUT ARGV...``.

In one process (torch imported once, one thread, so that forked children are safe and every run computes the same
bits): a child trains ``pinnfast ARGV --out OUT/straight`` uninterrupted and counts its writes (N); then for each
k = 1..N a child trains into ``OUT/killed_<k>`` and dies right after its k-th write
(``PINNFAST_TEST_KILL_AFTER_WRITE``), and another resumes it (``--resume``) to the end. Prints N.
"""
import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"

from pinnfast import plots, runfolder  # noqa: E402, F401 (plots: imported once here, not in every child)
from pinnfast.cli import main  # noqa: E402


def _child(argv, kill_after=None):
    """Run ``pinnfast argv`` in a forked child; its exit code (137: killed by the hook), and its write count."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        if kill_after is not None:
            os.environ["PINNFAST_TEST_KILL_AFTER_WRITE"] = str(kill_after)
        code = main(argv)
        os.write(write, str(runfolder._WRITES["count"]).encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        writes = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), int(writes or 0)


def drive(out, argv):
    out = Path(out)
    code, writes = _child([*argv, "--out", str(out / "straight")])
    assert code == 0, f"the uninterrupted run failed ({code})"
    for k in range(1, writes + 1):
        folder = str(out / f"killed_{k}")
        code, _ = _child([*argv, "--out", folder], kill_after=k)
        assert code == 137, f"the run meant to die after write {k} exited {code}"
        code, _ = _child([argv[0], "--out", folder, "--resume", "--quiet"])
        assert code == 0, f"the resume after write {k} failed ({code})"
    return writes


if __name__ == "__main__":
    print(drive(sys.argv[1], sys.argv[2:]))
