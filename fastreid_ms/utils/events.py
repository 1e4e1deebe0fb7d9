"""OUTPUT_DIR/metrics.json: one JSON object per line (training periods and evaluations)."""
import json
import math
import os
import time


def _jsonable(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def append_metrics(output_dir: str, record: dict, filename: str = "metrics.json") -> str:
    """Append ``record`` (plus a timestamp) as one line; a single write() so that a line is
    never interleaved or half-present after a crash of another writer. Returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, filename)
    line = json.dumps({"time": round(time.time(), 3),
                       **{k: _jsonable(v) for k, v in record.items()}}) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_metrics(path: str):
    """All records (JSON objects) of a metrics.json file; a truncated last line, as a crash
    mid-write may leave one, and lines that are not objects are skipped."""
    records = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def finite_number(value):
    """``value`` as a finite float, or None (metrics.json stores nan / inf as strings)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
