"""Starting the runner's child: its command, its environment, its pipes.

Kept to ``os``, ``signal`` and ``subprocess`` so that ``minigun run`` can start its
child (see :mod:`minigun.runner.warm`) before it has imported anything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from minigun.runner.protocol import RUNNER_PID_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "CHILD_BOOTSTRAP",
    "RUNNER_PID_ENV",
    "Spawned",
    "child_command",
    "child_environment",
    "spawn",
]

#: The child's whole program text (``python -c``). Kept tiny: it only makes the import
#: path safe and hands over to :func:`minigun.child.main.main`.
CHILD_BOOTSTRAP = """\
import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
try:
    from minigun.child.main import main
except ImportError as exc:
    sys.stderr.write(f"minigun: error: this interpreter cannot import minigun's child entry"
                     f" point ({exc}); install minigun-pipelines into {sys.executable}\\n")
    sys.exit(2)
main()
"""


def child_command(python: str | None = None) -> list[str]:
    """The child's argv for interpreter ``python`` (default: this one), never a shell.

    Nothing about the run is on the command line: the spec travels on the child's
    stdin, so params of any size or encoding fit. The bootstrap drops the working
    directory from the front of ``sys.path`` before anything is imported --
    ``python -m``/``-c`` put it first, and a pipeline file named ``types.py`` or
    ``json.py`` beside the user would shadow the standard library -- and a child
    interpreter without minigun fails as a usage error.
    """
    return [python or sys.executable, "-c", CHILD_BOOTSTRAP]


def child_environment(env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with ``env`` applied, plus what the child needs.

    ``PYTHONUNBUFFERED`` makes the child's lines reach the runner as they are printed
    rather than when a 8 KiB buffer fills or the child exits. ``MINIGUN_RUNNER_PID``
    tells the child who its runner is, so that it can stop itself if the runner is
    SIGKILLed (a signal nobody can forward). A value of ``None`` in ``env`` removes a
    variable.
    """
    environ = dict(os.environ)
    environ["PYTHONUNBUFFERED"] = "1"
    environ[RUNNER_PID_ENV] = str(os.getpid())
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = str(value)
    return environ


class Spawned:
    """A child that runs the bootstrap but has not yet been told what to run.

    It waits for its spec on stdin (see :mod:`minigun.child.main`), so it can be started
    before the caller knows the spec -- see :mod:`minigun.runner.warm` -- and its
    interpreter start-up overlaps the caller's own. ``records_r`` is the runner's end of
    the record pipe; ``records_fd`` is the number of the child's end, told in the spec.
    """

    __slots__ = ("argv", "cwd", "env", "proc", "records_fd", "records_r")

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        records_r: int,
        records_fd: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
    ) -> None:
        self.proc = proc
        self.records_r = records_r
        self.records_fd = records_fd
        self.argv = tuple(argv)
        self.env = env
        self.cwd = cwd

    def discard(self) -> None:
        """End the child unused: kill its group, close the pipes, reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        os.close(self.records_r)
        self.proc.wait()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
) -> Spawned:
    """Start ``argv`` in a new session with the runner's pipes; ``OSError`` if it can't.

    The new session makes the child lead a process group that everything it forks
    belongs to, so the runner can end the whole group at once.
    """
    records_r, records_w = os.pipe()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=(records_w,),
        )
    except BaseException:
        os.close(records_r)
        raise
    finally:
        os.close(records_w)  # the child has its copy; EOF then means the child is gone
    return Spawned(proc, records_r, records_w, argv, env, cwd)
