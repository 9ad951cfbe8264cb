"""The rotating log files that every process of a deployment writes at once (`app.core.logs`)."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from app.core.logs import RotatingLogFile

ROOT = Path(__file__).resolve().parent.parent
WRITER = """
import logging, sys
from app.core.logs import RotatingLogFile
handler = RotatingLogFile(sys.argv[1], maxBytes=int(sys.argv[2]), backupCount=100, encoding="utf-8")
log = logging.getLogger("writer")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[3])):
    log.info("%s line %05d %s", sys.argv[4], i, "x" * 60)
handler.close()
"""


def test_processes_writing_one_file_rotate_it_and_lose_or_mix_no_line(tmp_path: Path):
    """Three processes append lines to one file, rotated every ~20 kB: each line lands whole, once,
    in the file or one of its backups (the fast path writes without the lock file; rotation and
    reopening after another process rotated take it)."""
    path, lines = tmp_path / "app.log", 1500
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), "20000", str(lines), name], cwd=ROOT)
               for name in ("a", "b", "c")]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    files = sorted(tmp_path.glob("app.log*"))
    assert len(files) > 5  # it did rotate, many times
    written = [line for file in files for line in file.read_text().splitlines()]
    assert all(re.fullmatch(r"[abc] line \d{5} x{60}", line) for line in written)
    for name in "abc":
        assert sorted(line for line in written if line[0] == name) == [
            f"{name} line {i:05d} {'x' * 60}" for i in range(lines)]
    assert all(file.stat().st_size < 20000 + 3 * 80 for file in files)  # past the limit by a line a process at most


def test_a_removed_or_rotated_file_is_reopened_at_the_next_line(tmp_path: Path):
    path = tmp_path / "app.log"
    handler = RotatingLogFile(str(path), maxBytes=10**6, backupCount=2, encoding="utf-8")
    log = logging.getLogger("test_logs.reopen")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("first")
        path.rename(tmp_path / "app.log.1")  # another process rotated it
        log.info("second")
        path.unlink()  # someone removed it
        log.info("third")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert (tmp_path / "app.log.1").read_text() == "first\n"
    assert path.read_text() == "third\n"
