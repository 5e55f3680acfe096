"""The README's main job, shortened: ``ratewarden demo`` for 20 s runs the whole embedded
pipeline, and its report reconciles and scores detection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ratewarden.local import free_port

from .helpers import PasswordRedis

REDIS_PASSWORD, KEY_SECRET, HOOK_SECRET = "redis-pw-0a1b2c3d4e", "key-secret-9f8e7d6c5b4a", "hook-XYZ123secret"


def test_a_short_demo_reconciles_and_catches_every_abusive_client(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")}
    env["COLUMNS"] = "300"  # rich must not wrap the line carrying the admin token
    # secrets every process is given, to look for in their logs: a Redis password, the key-hashing
    # secret, a Slack webhook nothing answers (its deliveries fail and are logged), JSON lines
    redis_server = PasswordRedis(REDIS_PASSWORD).start()
    env.update(RATEWARDEN_REDIS_URL=redis_server.url, RATEWARDEN_API_KEY_SECRET=KEY_SECRET,
               RATEWARDEN_SLACK_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/services/T0/B0/{HOOK_SECRET}",
               RATEWARDEN_LOG_FORMAT="json")
    try:
        result = subprocess.run([sys.executable, "-m", "ratewarden.cli", "demo", "--duration", "20",
                                 "--report", str(report), "--data-dir", str(tmp_path / "var")],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)
    finally:
        redis_server.stop()
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
    # no secret in any process's log: the admin token (printed to the operator), the API keys, the
    # key-hashing secret, the Redis password, the webhook URL; and every line is JSON
    token = re.search(r"admin token (\S+)\)", result.stdout.replace("\n", " "))
    assert token, result.stdout[:2000]
    files = list((tmp_path / "var" / "logs").glob("*.log"))
    logs = "".join(path.read_text(errors="replace") for path in files)
    for secret in (token.group(1), "rw_", KEY_SECRET, REDIS_PASSWORD, HOOK_SECRET, "/services/T0/B0"):
        assert secret not in logs, secret
    lines = [line for line in logs.splitlines() if line.strip()]
    ours = [line for path in files if path.name != "kafka.log"  # the broker is no Python process
            for line in path.read_text(errors="replace").splitlines() if line.strip()]
    events = [json.loads(line)["event"] for line in ours]  # every line of ours is one JSON object
    print(f"logs: {len(files)} files, {len(lines)} lines ({len(events)} JSON lines of the worker and the API); "
          f"scanned for 6 secrets, none found; alert_sink lines: {[e for e in events if e.startswith('alert_sink')]}")
    assert "alert_sink_unavailable" in events  # the webhook's outage was logged (by sink name)
