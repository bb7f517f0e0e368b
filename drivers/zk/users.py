"""Users on the terminal: list, upsert, delete, with the name encoding the site uses."""

from __future__ import annotations

import struct

from config.errors import ProtocolError, UsageError
from drivers.zk import protocol as p
from drivers.zk.extra_codec import pack_user_encoded, unpack_user_encoded
from drivers.zk.reader import free_sizes, read_whole
from drivers.zk.records import USER_SIZES, UserRecord
from drivers.zk.transport import ZkConnection

MAX_UID = 0x7FFF  # DELETE_USER carries the slot as an i16


def list_users(conn: ZkConnection, encoding: str = "utf-8") -> tuple[list[UserRecord], int | None]:
    """Every user (by slot) and the user record size (None when the terminal has no users)."""
    count = free_sizes(conn).users
    if count == 0:
        return [], None
    buffer = read_whole(conn, p.CMD_USERTEMP_RRQ, p.FCT_USER)
    if len(buffer) < 4:
        raise ProtocolError(f"{conn.endpoint.label} sent a user buffer without its u32 size")
    (total,) = struct.unpack_from("<I", buffer)
    body = buffer[4 : 4 + total]
    size = _user_size(conn, len(body), count)
    users = [unpack_user_encoded(body[i : i + size], encoding) for i in range(0, len(body), size)]
    return users, size


def _user_size(conn: ZkConnection, total: int, count: int) -> int:
    for attempt in range(2):
        if count and total % count == 0 and total // count in USER_SIZES:
            return total // count
        if attempt == 0:
            count = free_sizes(conn).users  # a user enrolled between the two questions
    raise ProtocolError(
        f"{conn.endpoint.label} sent {total} bytes for {count} users, which is no user layout "
        "we know (72 or 28 bytes): nothing was changed; report the model and firmware"
    )


def stored_user_id(user_id: str, size: int | None) -> str:
    """The id as the terminal keeps it: a number in 28-byte user records ("007" is user 7)."""
    if size == 28 and user_id.isdecimal():
        return str(int(user_id))
    return user_id


def default_user_size(conn: ZkConnection) -> int:
    """The user layout when the terminal has no users to measure it by (pyzk's rule)."""
    return 28 if conn.endpoint.udp else 72


def upsert_user(
    conn: ZkConnection,
    user_id: str,
    name: str = "",
    *,
    privilege: int = 0,
    password: str = "",
    card: int = 0,
    group_id: str = "",
    encoding: str = "utf-8",
) -> UserRecord:
    """Create the user or update it in place (same slot); return what was written."""
    if not 0 <= card <= 0xFFFFFFFF:
        raise UsageError(
            f"card number {card} does not fit the terminal's 32-bit card field: give the "
            "number printed on the card (10 digits at most), not a wider reading"
        )
    users, size = list_users(conn, encoding)
    size = size or default_user_size(conn)
    user_id = stored_user_id(user_id, size)
    existing = next((u for u in users if u.user_id == user_id), None)
    if existing is not None:
        uid = existing.uid
    else:
        taken = {u.uid for u in users}
        uid = next((i for i in range(1, MAX_UID + 1) if i not in taken), 0)
        if not uid:
            raise UsageError(f"{conn.endpoint.label} has no free user slot left")
    if size == 28 and not user_id.isdecimal():
        raise UsageError(
            f"{conn.endpoint.label} stores numeric user ids only (28-byte user records); "
            f"{user_id!r} cannot be enrolled there"
        )
    user = UserRecord(uid, user_id, name, privilege, password, card, group_id)
    reply = conn.request(p.CMD_USER_WRQ, pack_user_encoded(user, size, encoding))
    if reply.command != p.ACK_OK:
        raise ProtocolError(
            f"{conn.endpoint.label} refused to store user {user_id} (code {reply.command}): "
            "the user table may be full or the id invalid for this firmware"
        )
    _refresh(conn)
    return user


def delete_user(conn: ZkConnection, user_id: str) -> bool:
    """Delete the user with this id; False when there was none."""
    users, size = list_users(conn)
    wanted = stored_user_id(user_id, size)
    found = next((u for u in users if u.user_id == wanted), None)
    if found is None:
        return False
    reply = conn.request(p.CMD_DELETE_USER, struct.pack("<h", found.uid))
    if reply.command != p.ACK_OK:
        raise ProtocolError(
            f"{conn.endpoint.label} refused to delete user {user_id} (code {reply.command})"
        )
    _refresh(conn)
    return True


def _refresh(conn: ZkConnection) -> None:
    # Terminals apply user changes to their lookup tables on REFRESHDATA (pyzk sends it too).
    conn.request(p.CMD_REFRESHDATA)
