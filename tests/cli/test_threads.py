"""The CLI's thread choice on a busy machine (redafit._runtime.choose_threads)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from redafit import _runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/loadavg")
def test_a_busy_process_is_seen_and_our_own_threads_are_not():
    """A process spinning on a CPU counts as busy; this process's own threads (NumPy's BLAS pool, pytest) do not."""
    import numpy as np

    np.ones((64, 64)) @ np.ones((64, 64))  # wakes the BLAS threads of this process
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert _runtime.busy_threads(samples=9, interval=0.02) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_choose_threads_rules(monkeypatch):
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(_runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(_runtime, "busy_threads", lambda: 0)
    assert _runtime.choose_threads() is None  # quiet: PyTorch's own choice
    assert _runtime.choose_threads(3) == 3  # --threads always wins
    monkeypatch.setattr(_runtime, "busy_threads", lambda: 2)
    assert _runtime.choose_threads() == 2  # the CPUs left free
    monkeypatch.setattr(_runtime, "busy_threads", lambda: 7)
    assert _runtime.choose_threads() == 1
    monkeypatch.setattr(_runtime, "busy_threads", lambda: None)  # not Linux
    assert _runtime.choose_threads() is None
    monkeypatch.setattr(_runtime, "busy_threads", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's own OpenMP setting is left alone
    assert _runtime.choose_threads() is None


def test_a_command_s_help_loads_no_torch():
    """`redafit fit --help` (and -h, after the group's options, or a sub-group's command's) is answered without
    loading torch, whose import is most of a second's start-up; a command that runs sets its threads (and loads
    torch) as before, also when an option's value is "-h" or one follows `--`. `redafit models list` reads files
    and metadata only: no torch either."""
    code = ("import sys; from redafit.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    for args, loaded, helped in ((["fit", "--help"], "False", True), (["-v", "view", "-h"], "False", True),
                                 (["models", "install", "-h"], "False", True),
                                 (["--threads", "1", "models", "list"], "False", False),
                                 (["--threads", "1", "fit", "-o", "-h", "missing.jpg"], "True", False),
                                 (["fit", "--", "-h"], "True", False)):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert r.stderr.strip().splitlines()[-1] == loaded, (args, r.stderr)
        assert ("Usage:" in r.stdout) == helped, (args, r.stdout)


def test_set_threads_is_the_command_s_choice_for_library_use(monkeypatch):
    """redafit.set_threads(): what the command line sets (an explicit count; the CPUs other busy processes leave
    free when fewer than PyTorch's choice; nothing on a quiet machine), returning the count it set."""
    import torch

    import redafit
    from redafit import _runtime

    before = torch.get_num_threads()
    try:
        assert redafit.set_threads(1) == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setattr(_runtime, "busy_threads", lambda: None)
        assert redafit.set_threads() is None and torch.get_num_threads() == 2
        monkeypatch.setattr(_runtime, "busy_threads", lambda: 10 ** 6)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        assert redafit.set_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_set_threads_refuses_what_is_not_a_count():
    import redafit

    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="whole number"):
            redafit.set_threads(bad)


def test_a_command_run_inside_a_program_leaves_its_threads_and_log_level_as_found(tmp_path, monkeypatch):
    """A command run in another program's process (here CliRunner; also ``main(args, standalone_mode=False)``)
    puts PyTorch's thread count and the ``redafit`` logger's level back when it ends, on an error too. They stayed
    lowered: one busy moment on the machine left the rest of a test session on one thread."""
    import logging

    import torch
    from click.testing import CliRunner

    from redafit.cli import main

    before, level = torch.get_num_threads(), logging.getLogger("redafit").level
    real = torch.set_num_threads
    counts = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (counts.append(n), real(n))[1])
    real(2)
    try:
        for args in (["-q", "--threads", "1", "fit", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "a.obj")],
                     ["-vv", "--threads", "1", "models", "info", str(tmp_path / "missing.mat")]):
            counts.clear()
            r = CliRunner().invoke(main, args)
            assert r.exit_code not in (0, 1), r.output  # the command's own error, after the threads were set
            assert counts == [1, 2], (args, counts)  # set for the command, then put back
            assert torch.get_num_threads() == 2, args
            assert logging.getLogger("redafit").level == level, args
    finally:
        real(before)
