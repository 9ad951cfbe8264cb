"""Background batches (`app.core.batches`): a database outage is one warning, and one on recovery."""
from __future__ import annotations

import logging
import time

import peewee

from app.core.batches import BackgroundBatches


def test_an_outage_is_one_warning_and_one_on_recovery_not_a_traceback_per_retry(caplog):
    """The usage writer logged a full traceback on every retry (once a second) while the database was away."""
    written: list[list[int]] = []
    down = {"rounds": 5}

    def write(batch: list[int]) -> None:
        if down["rounds"]:
            down["rounds"] -= 1
            raise peewee.OperationalError("unable to open database file")
        written.append(batch)

    batches = BackgroundBatches(write, flush_interval=0.01, name="usage rows")
    with caplog.at_level(logging.DEBUG, logger="aiserver.batches"):
        for item in range(7):
            batches.add(item)
        deadline = time.monotonic() + 5
        while not written and time.monotonic() < deadline:
            time.sleep(0.01)
        batches.stop()
    records = [r for r in caplog.records if r.name == "aiserver.batches"]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"], [r.getMessage() for r in records]
    assert "could not write usage rows (OperationalError: unable to open database file)" in records[0].getMessage()
    assert "written again" in records[1].getMessage()
    assert all(r.exc_info is None for r in records)
    assert sum(len(batch) for batch in written) == 7  # nothing lost: the outage's rows went in one batch
