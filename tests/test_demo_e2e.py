"""The README's main job, shortened: ``ratewarden demo`` for 20 s runs the whole embedded
pipeline, and its report reconciles and scores detection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def test_a_short_demo_reconciles_and_catches_every_abusive_client(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")}
    env["COLUMNS"] = "300"  # rich must not wrap the line carrying the admin token
    result = subprocess.run([sys.executable, "-m", "ratewarden.cli", "demo", "--duration", "20",
                             "--report", str(report), "--data-dir", str(tmp_path / "var")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(report.read_text())
    print(f"\nsent {data['requests_sent']}, published {data['events_published']}, "
          f"in ClickHouse {data['events_in_clickhouse']}; patterns {data['patterns']}")
    assert data["requests_sent"] > 1000
    assert data["events_in_clickhouse"] == data["events_published"] == data["requests_sent"]
    assert sum(data["responses_by_status"].values()) == data["requests_sent"]
    for pattern, score in data["patterns"].items():
        if pattern == "legit":
            assert score["false_alarms"] == 0, data["clients"]
        else:
            assert score["detected"] == score["clients"] and score["missed"] == 0, (pattern, data["clients"])
    assert {a["type"] for a in data["alerts"]} >= {"credential_stuffing", "scraping", "retry_storm", "key_sharing",
                                                    "key_cycling", "traffic_spike"}
    assert all(a["client"] and a["severity"] and a["first_seen"] for a in data["alerts"])
    assert set(data["labels"].values()) >= {"legit", "credential_stuffing", "scraping"}
    # no secret in any process's log: the admin token (printed to the operator) and the API keys
    token = re.search(r"admin token (\S+)\)", result.stdout.replace("\n", " "))
    assert token, result.stdout[:2000]
    logs = "".join(path.read_text(errors="replace") for path in (tmp_path / "var" / "logs").glob("*.log"))
    assert logs and token.group(1) not in logs and "rw_" not in logs
