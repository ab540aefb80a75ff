"""The servers under test (started and stopped as the tests do) and their workers' memory."""

from __future__ import annotations

from pathlib import Path

from harness.processes import ServerProcess, free_port

__all__ = ["Server", "descendants", "free_port", "rss_mib"]


class Server(ServerProcess):
    """A server process (group) on `port`, ready when `ready` answers 200; it logs to `log`."""

    start_timeout = 120.0  # BentoML and two-worker launches on a loaded machine

    def __init__(self, name: str, command: list[str], env: dict, port: int, log: Path, ready: str):
        super().__init__(command, env, log)
        self.name, self.port, self.health = name, port, ready
        self.url = f"http://127.0.0.1:{port}"

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's spawned workers, or the launcher itself
        when it runs one worker in-process (a trainer it started is not a worker)."""
        children = descendants(self.process.pid)
        workers = [pid for pid in children if b"spawn_main" in _cmdline(pid)]
        return workers or [self.process.pid]


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        kids = [pid for pid, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return sorted(found)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
