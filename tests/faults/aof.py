"""Where did a lost message go? Replay the Redis broker's append-only file to find out.

The fault tier's Redis broker logs every write to its AOF (appendfsync always). Replaying the
list and `unacked` writes tells, for a task id, what happened to its message: still queued,
held in kombu's unacked hash (the restore scan brings it back), or popped by a consumer
(BRPOP is logged as RPOP) and never recorded as unacked, i.e. gone. A new server process
starts its writes with a SELECT, which marks each restart in the file.
"""

from __future__ import annotations

import json
from pathlib import Path


def _commands(data: bytes) -> list[list[bytes]]:
    """Parse the RESP arrays of an AOF file (no RDB preamble: the base file is separate)."""
    commands, i = [], 0
    while i < len(data):
        if data[i : i + 1] != b"*":
            break  # a truncated tail: stop there
        end = data.index(b"\r\n", i)
        count, i = int(data[i + 1 : end]), end + 2
        arguments = []
        for _ in range(count):
            end = data.index(b"\r\n", i)
            length, i = int(data[i + 1 : end]), end + 2
            arguments.append(data[i : i + length])
            i += length + 2
        commands.append(arguments)
    return commands


def _task_id(raw: bytes) -> str | None:
    try:
        return json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


def trace_messages(broker_folder: Path, task_ids: set[str]) -> dict[str, str]:
    """Return, per task id, what the broker's AOF says happened to its message."""
    data = b"".join(p.read_bytes() for p in sorted(broker_folder.glob("appendonlydir/*.aof")))
    commands = _commands(data)
    lists: dict[bytes, list[bytes]] = {}
    tags: dict[bytes, str] = {}  # unacked delivery tag -> task id
    fate = {task_id: "never pushed to a queue" for task_id in task_ids}
    for index, command in enumerate(commands):
        name = command[0].upper()
        if name in (b"LPUSH", b"RPUSH"):
            items = lists.setdefault(command[1], [])
            for raw in command[2:]:
                items.insert(0, raw) if name == b"LPUSH" else items.append(raw)
                if (task_id := _task_id(raw)) in fate:
                    fate[task_id] = f"still in queue {command[1].decode()} (pushed, entry {index})"
        elif name == b"RPOP" and lists.get(command[1]):
            task_id = _task_id(lists[command[1]].pop())
            if task_id in fate:
                restart = index + 1 < len(commands) and commands[index + 1][0].upper() == b"SELECT"
                fate[task_id] = (
                    f"popped from {command[1].decode()} by a consumer's BRPOP (entry {index}"
                    f"{', the last write before a restart' if restart else ''}) and never "
                    "recorded in the unacked hash: lost"
                )
        elif name == b"HSET" and command[1] == b"unacked":
            message = json.loads(command[3])[0] if len(command) > 3 else {}
            task_id = (message.get("headers") or {}).get("id")
            if task_id in fate:
                tags[command[2]] = task_id
                fate[task_id] = f"in the unacked hash (entry {index})"
        elif name == b"HDEL" and command[1] == b"unacked":
            for tag in command[2:]:
                if (task_id := tags.pop(tag, None)) is not None:
                    fate[task_id] = f"acked or restored (left the unacked hash, entry {index})"
    return fate
