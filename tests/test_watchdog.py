"""`watchdog.watch`: the processes a killed driver started are stopped once it is gone."""

import os
import signal
import subprocess
import sys
import time

import psutil

from arm_ray import watchdog

# a "driver" that starts a "Ray agent": a child in a session of its own, deaf to SIGHUP, that outlives it
DRIVER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                  "time.sleep(600)"], start_new_session=True)
print("started", flush=True)
time.sleep(600)
"""


def test_a_killed_drivers_children_are_stopped(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    assert driver.stdout.readline().strip() == "started"
    child = psutil.Process(driver.pid).children()[0]
    dog = subprocess.Popen([sys.executable, "-m", "arm_ray.watchdog", str(driver.pid)], start_new_session=True)
    time.sleep(1)  # it has looked at least once
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    dog.wait(timeout=30)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_process_naming_the_session_is_stopped_even_if_never_seen(tmp_path):
    session = str(tmp_path / "session_x")
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"--plasma={session}/sockets"],
                             start_new_session=True)
    driver.kill()
    driver.wait()
    assert watchdog.watch(driver.pid, session, poll_s=0.05) == 1
    stray.wait(timeout=10)  # ended (its exit status went to the watchdog's wait, in this same process)
