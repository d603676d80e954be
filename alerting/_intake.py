"""The alerts topic into the store: what the recorder (the store's one writer) runs for it.

Exactly once per alerts message, with the recorder's discipline: every row names the message
it came from (``src`` = ``<topic>/<partition>``, ``src_offset``); before writing a partition's
messages the last offset each table holds from that partition is read (once, then followed
in memory), and messages at or before it are skipped. A table's rows of one write go in one
insert, so a crash leaves each table either with all of them or none: the re-read after it
writes exactly what is missing. The recorder commits the offsets after the write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stampline.alerting._history import read_record, write_rows, written_offsets
from stampline.audit import Store

log = logging.getLogger("stampline.alerting")


@dataclass(slots=True)
class IntakeResult:
    """What one write did."""

    history: int = 0  # transitions written
    actions: int = 0  # people's actions written
    skipped: int = 0  # messages already in the store (a re-read)
    unreadable: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)


class AlertIntake:
    """Writes alerts-topic messages into ``alert_history`` and ``alert_actions``.

    One writer per alerts partition (the recorder's consumer group gives each partition one
    recorder); :meth:`forget` a partition when it is assigned or revoked, so its progress is
    read from the store again.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._done: dict[str, dict[str, int]] = {}  # src -> table -> last offset written

    def forget(self, src: str) -> None:
        self._done.pop(src, None)

    def write(self, src: str, messages: Sequence[tuple[int, bytes | None]]) -> IntakeResult:
        """Write the messages ``(offset, value)`` of one alerts partition, in offset order.

        Unreadable messages are returned with the reason (the caller keeps them as dead
        letters); nothing of them is written here.

        Raises:
            StoreError: the store refused a write (nothing is remembered as written: the
                retry reads the progress again).
        """
        result = IntakeResult()
        done = self._done.get(src)
        if done is None:
            done = written_offsets(self.store, src)
        rows: dict[str, list[dict[str, Any]]] = {"history": [], "actions": []}
        for offset, value in messages:
            try:
                table, row = read_record(value)
            except ValueError as exc:
                result.unreadable.append((offset, str(exc)))
                continue
            if offset <= done[table]:
                result.skipped += 1
                continue
            row["src"], row["src_offset"] = src, offset
            rows[table].append(row)
        try:
            for table, batch in rows.items():
                if batch:
                    write_rows(self.store, table, batch)
                    done = {**done, table: batch[-1]["src_offset"]}
        except Exception:
            self._done.pop(src, None)
            raise
        self._done[src] = done
        result.history, result.actions = len(rows["history"]), len(rows["actions"])
        return result
