# expect: timeout
# limits: wall_factor=1.0
# Ignores every signal a sandbox might use short of SIGKILL, then spins.
import signal


def main_solution():
    for name in ("SIGALRM", "SIGTERM", "SIGINT", "SIGHUP", "SIGPROF", "SIGXCPU", "SIGVTALRM"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.setitimer(signal.ITIMER_PROF, 0)
    while True:
        pass
