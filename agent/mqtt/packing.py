"""Packing a page of contract JSON into the messages of the ``punches`` topic.

A page comes from the outbox as three lists (seqs, ids, each punch's JSON or ``b""`` where SQL
could not write it; see buffer/payload.py). A batch is one message body,
``{"gateway_id": ..., "outbox_id": ..., "punches": [...]}``, of at most ``batch_size``
punches and ``max_bytes`` bytes; a punch larger than ``max_bytes`` goes alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from buffer.payload import Page
from config.errors import OutboxError

Batch = tuple[list[int], list[str], bytes]  # seqs, ids, the message body
EncodeRow = Callable[[str], bytes]  # a punch's JSON from its id, for rows SQL could not write
Skip = Callable[[int, str, str], None]  # (seq, id, why): a row left out of every batch


class Packer:
    """Pages into batches by count and bytes; rows it cannot send go to ``skip``."""

    def __init__(
        self, batch_size: int, gateway_id: str, outbox_id: str, encode_row: EncodeRow, skip: Skip
    ) -> None:
        self.batch_size = batch_size
        self._head = (
            b'{"gateway_id":'
            + json.dumps(gateway_id).encode()
            + b',"outbox_id":'
            + json.dumps(outbox_id).encode()
            + b',"punches":['
        )
        self._encode_row = encode_row
        self._skip = skip

    def split(self, page: Page, max_bytes: int, limit: int | None) -> list[Batch]:
        """Batches of ``page`` in seq order; ``limit``: the broker's announced payload limit."""
        seqs, ids, parts = page
        size, head = self.batch_size, self._head
        out: list[Batch] = []
        start = 0
        if b"" not in parts:  # every row written by SQLite (the usual page): slices and joins
            for start in range(0, len(parts), size):
                chunk = parts[start : start + size]
                if len(head) + 2 + sum(map(len, chunk)) + len(chunk) > max_bytes:
                    break  # this one needs packing by bytes: from here on, row by row
                out.append(
                    (seqs[start : start + size], ids[start : start + size], self._body(chunk))
                )
            else:
                return out
        return out + self._pack(seqs[start:], ids[start:], parts[start:], max_bytes, limit)

    def _body(self, parts: list[bytes]) -> bytes:
        return self._head + b",".join(parts) + b"]}"

    def _pack(
        self,
        page_seqs: list[int],
        page_ids: list[str],
        page_parts: list[bytes],
        max_bytes: int,
        limit: int | None,
    ) -> list[Batch]:
        """Rows into batches one by one: by bytes, and encoding in Python what SQL could not."""
        batch_size = self.batch_size
        out: list[Batch] = []
        seqs: list[int] = []
        ids: list[str] = []
        parts: list[bytes] = []
        size = len(self._head) + 2
        for seq, punch_id, part in zip(page_seqs, page_ids, page_parts, strict=True):
            if not part:  # SQLite wrote the JSON of ordinary rows; the rare others here
                try:
                    part = self._encode_row(punch_id)
                except (TypeError, ValueError, AttributeError, LookupError, OutboxError) as exc:
                    self._skip(seq, punch_id, f"cannot encode punch seq {seq}: {exc!r}")
                    continue
            length = len(part) + 1
            if limit is not None and len(self._head) + 2 + length > limit:
                # Alone in a batch it would still cost the connection at every attempt.
                self._skip(
                    seq,
                    punch_id,
                    f"punch seq {seq} ({length} bytes of JSON) is larger than the broker's "
                    f"maximum packet size allows ({limit} bytes): raise max_packet_size on "
                    "the broker",
                )
                continue
            if seqs and (len(seqs) >= batch_size or size + length > max_bytes):
                out.append((seqs, ids, self._body(parts)))
                seqs, ids, parts, size = [], [], [], len(self._head) + 2
            seqs.append(seq)
            ids.append(punch_id)
            parts.append(part)
            size += length
        if seqs:
            out.append((seqs, ids, self._body(parts)))
        return out
