"""The process of the temporary Prefect server a build starts (``flows.build.temporary_server``).

It serves Prefect's API as Prefect's own temporary server does (uvicorn, loopback, no UI), but
stays up for as long as the build that started it needs it, and not longer:

* It runs in a session of its own, so signals to the build's process group do not reach it:
  Ctrl-C in a terminal, `timeout`, `kill -- -PGID`.
* While the build lives, it ignores SIGTERM: systemd and Slurm send it to every process of a
  job at once. The build, stopped by the same signal, still reports its end here, then stops
  the server itself with SIGINT. A server that died with the build left the build retrying its
  last reports for over two minutes, then ending in tracebacks.
* It asks the kernel for SIGTERM when the build dies (the parent-death signal), so a build
  killed outright (SIGKILL, the out-of-memory killer) leaves no server running.

    python -m flows.prefect_server PARENT_PID PORT

``PARENT_PID`` is 0 when the build started it from a thread other than its main one: the
parent-death signal comes when the thread that started the process ends, not the process, so
it is not asked for, and SIGTERM stops the server as usual.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import uvicorn


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, parent: int) -> None:
        super().__init__(config)
        self.parent = parent

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.parent and os.getppid() == self.parent:
            return  # the build stops the server once it has reported its end
        super().handle_exit(sig, frame)


def main(argv: list[str]) -> None:
    parent, port = int(argv[0]), int(argv[1])
    if parent:
        from sandbox.isolation import set_parent_death_signal

        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:  # the build died before the signal was asked for
            return
    # uvicorn raises the signal that stopped it again once it has shut down; SIGINT then ends
    # the process quietly instead of in a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, host="127.0.0.1",
                            port=port, log_level="error", lifespan="on")
    _Server(config, parent).run()


if __name__ == "__main__":
    main(sys.argv[1:])
