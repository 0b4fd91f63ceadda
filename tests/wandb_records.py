"""Read what an offline W&B run holds, for tests: wandb 0.2x+ writes no summary or config files
offline, only its `run-*.wandb` record log (LevelDB's log format: 32 KiB blocks of records with
7-byte headers, after a 7-byte file header), each record a `wandb_internal_pb2.Record`."""

import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7  # crc32 (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    found, pending, pos = [], b"", 7  # skip the file header (":W&B", version)
    while pos + HEADER <= len(raw):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + HEADER])
        data = raw[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            found.append(data)
        elif kind == FIRST:
            pending = data
        elif kind == MIDDLE:
            pending += data
        elif kind == LAST:
            found.append(pending + data)
    return found


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """Name, tags, job type, group, summary keys and config keys of an offline run folder."""
    (path,) = run_dir.glob("run-*.wandb")
    run: dict[str, Any] = {"summary_keys": set(), "config_keys": set()}
    for data in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run |= {"name": record.run.display_name, "tags": list(record.run.tags),
                    "job_type": record.run.job_type, "group": record.run.run_group}  # fmt: skip
        elif kind == "summary":
            run["summary_keys"] |= {u.key or "/".join(u.nested_key) for u in record.summary.update}
        elif kind == "config":
            run["config_keys"] |= {u.key for u in record.config.update}
    return run
