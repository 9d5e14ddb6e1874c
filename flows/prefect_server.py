"""The process of the temporary Prefect server a build starts (``flows.build.temporary_server``).

It runs uvicorn, as Prefect's own temporary server does, with two differences that keep it
tied to the build that started it and to nothing else:

* It is in a session of its own, so signals sent to the build's process group do not reach
  it: Ctrl-C in a terminal, `timeout`, `kill -- -PGID`. Those stop the build, which reports
  its end to this server and then stops it. A server that died with the build left the build
  retrying its last reports for over two minutes, then ending in tracebacks.
* It asks the kernel for SIGTERM when the build dies (the parent-death signal), so a build
  killed outright (SIGKILL, the out-of-memory killer) leaves no server running.

    python -m flows.prefect_server PARENT_PID UVICORN_ARGS...

``PARENT_PID`` is 0 when the build started it from a thread other than its main one: the
parent-death signal is sent when the thread that started the process ends, not the process.
"""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> None:
    parent = int(argv[0])
    if parent:
        from sandbox.isolation import set_parent_death_signal

        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:  # the build died before the signal was asked for
            return
    from uvicorn.main import main as uvicorn

    uvicorn(args=argv[1:], prog_name="uvicorn")


if __name__ == "__main__":
    main(sys.argv[1:])
