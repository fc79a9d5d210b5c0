"""Child process for the crash test: writes realistic traces into a journal for ever, printing
`last_flushed_seq` after each flush, until its parent kills it with SIGKILL.

    python -m tests.engine.journal.crash_writer JOURNAL_PATH
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from engine.config.sections.journal import JournalSection
from engine.journal.writer import Journal
from tests.kit.domain import T0
from tests.kit.events import (
    entered_trace,
    filter_rejected_trace,
    risk_rejected_trace,
    rule_rejected_trace,
)

FACTORIES = (entered_trace, filter_rejected_trace, rule_rejected_trace, risk_rejected_trace)


async def main(path: Path) -> None:
    settings = JournalSection(batch_size=200, flush_interval_ms=5)
    async with Journal.open(path, settings) as journal:
        cycle = 0
        while True:
            for i in range(40):  # ~250 events, several batches, the writer committing meanwhile
                FACTORIES[i % 4](journal, symbol=f"C{i}/USDT", ts_ms=T0 + cycle * 1000 + i)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            await journal.flush()
            print(journal.last_flushed_seq, flush=True)
            cycle += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
