"""A private MariaDB server for DB-bench episodes: a Unix socket in a temporary directory, no TCP port.

`Server.start()` initialises a fresh data directory (`mariadb-install-db`) and starts `mariadbd` on it; `stop()`
ends it and removes the directory. Episodes each get a database of their own on the one server, over their own
connection, so many run at once. The server dies with the process that started it (`owned.start_owned`), so a
killed rollout actor leaves no `mariadbd` behind.

Settings that change what a task's SQL does are MySQL 8's where MariaDB has the same one (utf8mb4 text,
`group_concat_max_len` 1024, ONLY_FULL_GROUP_BY), except strict mode: with it, 2 of DB-bench's gold UPDATEs fail
on a text-to-number comparison ("Truncated incorrect DECIMAL value") and their official md5 is only reproduced
without it (measured: 197 of 200 write tasks with strict mode, 199 without).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from arm_ray.benchmarks.owned import start_owned
from arm_ray.errors import ConfigError

SQL_MODE = "ONLY_FULL_GROUP_BY,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
SETTINGS = ["--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_520_ci",
            "--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"]  # small: one server per rollout actor
START_TIMEOUT_S = 30.0
PREFIX = "arm_ray_mariadb_"
INSTALL_HINT = ("install the Debian/Ubuntu package mariadb-server "
                "(scripts/setup.sh does: apt-get install -y mariadb-server)")


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise ConfigError(f"`{name}` not found: DB-bench runs its tasks on a real MariaDB server; {INSTALL_HINT}")
    return path


def binaries() -> tuple[str, str]:
    """(mariadb-install-db, mariadbd), or a ConfigError that says how to install them."""
    return _binary("mariadb-install-db"), _binary("mariadbd")


def client():
    try:
        import pymysql
    except ImportError:
        raise ConfigError("DB-bench needs the package PyMySQL: install arm-ray[agentbench]") from None
    return pymysql


class Server:
    """One `mariadbd` with its own data directory, reachable only through `self.socket`."""

    def __init__(self):
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self._lock = threading.RLock()

    @property
    def socket(self) -> str:
        return str(self.root / "mysqld.sock")

    def start(self) -> "Server":
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                return self
            install, mariadbd = binaries()
            client()
            remove_stale()
            self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
            (self.root / "owner.pid").write_text(str(os.getpid()))
            data = self.root / "data"
            base = ["--no-defaults", f"--datadir={data}", *SETTINGS]
            user = [f"--user={_user()}"]  # mariadbd refuses root unless told to run as root
            p = subprocess.run([install, *base, *user, "--skip-test-db", "--auth-root-authentication-method=normal"],
                               capture_output=True, text=True)
            if p.returncode != 0:
                self._remove()
                raise ConfigError(f"mariadb-install-db failed (exit {p.returncode}): {p.stderr.strip()[-600:]}")
            argv = [mariadbd, *base, *user, f"--socket={self.socket}", f"--pid-file={self.root / 'mysqld.pid'}",
                    f"--log-error={self.root / 'error.log'}", "--skip-networking", "--skip-grant-tables",
                    f"--sql-mode={SQL_MODE}", "--group-concat-max-len=1024", "--max-connections=1000"]
            try:
                self.process = start_owned(argv, "mariadbd", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
            except OSError as e:
                self._remove()
                raise ConfigError(f"mariadbd did not start: {e}") from None
            self._wait_ready()
            atexit.register(self.stop)
            return self

    def _wait_ready(self) -> None:
        pymysql = client()
        deadline = time.monotonic() + START_TIMEOUT_S
        process = self.process
        while True:
            if process.poll() is not None:
                log = self._log_tail()
                self.stop()
                raise ConfigError(f"mariadbd exited at start (exit {process.returncode}): {log}")
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    log = self._log_tail()
                    self.stop()
                    raise ConfigError(f"mariadbd did not answer on its socket within {START_TIMEOUT_S:.0f} s: "
                                      f"{log}") from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return (self.root / "error.log").read_text(errors="replace").strip()[-600:]
        except OSError:
            return "(no error log)"

    def connect(self, database: str | None = None):
        """A new connection (autocommit on: each statement stands as soon as it ran)."""
        return client().connect(unix_socket=self.socket, user="root", database=database, autocommit=True,
                                charset="utf8mb4")

    def stop(self) -> None:
        with self._lock:
            p, self.process = self.process, None
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self._remove()
        atexit.unregister(self.stop)

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def _alive(pid_file: Path) -> bool | None:
    """Whether the process a pid file names runs (None: no readable pid file, or another user's process)."""
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError) as e:
        return False if isinstance(e, ProcessLookupError) else None
    return True


def remove_stale() -> None:
    """Remove the directories of servers whose owner process is gone (killed before it could clean up)."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        if _alive(root / "owner.pid") is False and not _alive(root / "mysqld.pid"):
            shutil.rmtree(root, ignore_errors=True)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
