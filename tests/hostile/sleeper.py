# expect: timeout
# limits: wall_factor=1.0
# Uses no CPU at all: only the wall-clock watchdog can stop it.
import time


def main_solution():
    time.sleep(3600)
