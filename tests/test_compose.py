"""docker-compose.yml, checked without a Docker engine: images or builds, mounted files that
exist, RATEWARDEN_* variables the settings define, health checks and start order, and what a
stack that runs unattended needs: restart policies, state on volumes, ports on loopback,
required secrets, pinned images and plugin, credentials beside the URL, Prometheus scraping
every Python service and provisioned in Grafana."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ratewarden.analytics.admin import AdminSettings
from ratewarden.analytics.client import ClickHouseCredentials
from ratewarden.enforcer.settings import EnforcerSettings
from ratewarden.stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
STAGES = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S))
STAGE_IMAGES = {stage: image for image, stage in re.findall(r"^FROM (\S+) AS (\w+)$", DOCKERFILE, re.M)
                if ":" in image}  # stages built from a registry image, not from another stage
SECRETS = ("CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "RATEWARDEN_ADMIN_TOKEN", "RATEWARDEN_API_KEY_SECRET")


def _known_variables() -> set[str]:
    names = set()
    for settings in (EnforcerSettings, StreamSettings, AdminSettings, ClickHouseCredentials):
        prefix = settings.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in settings.model_fields}
    return names


def _one_shot() -> set[str]:
    """Services that run once and exit: those others wait to complete, and those never restarted."""
    waited_for = {name for service in SERVICES.values()
                  for name, condition in (service.get("depends_on") or {}).items()
                  if isinstance(condition, dict) and condition.get("condition") == "service_completed_successfully"}
    return waited_for | {name for name, service in SERVICES.items() if service.get("restart") == "no"}


def _in_profile(profile: str) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in SERVICES.items() if profile in service.get("profiles", [])}


def _interpolate(text: str) -> str:
    """``text`` as compose reads it with none of the optional variables set (their defaults)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def _listens_on(name: str) -> int:
    """The port service ``name``'s HTTP server listens on, from its command."""
    command = SERVICES[name]["command"]
    return int(command[command.index("--port") + 1])


def test_the_full_stack_is_there() -> None:
    assert {"redis", "kafka", "clickhouse", "grafana", "prometheus", "api", "worker", "admin"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    assert "KAFKA_PROCESS_ROLES" in SERVICES["kafka"]["environment"]
    assert SERVICES["grafana"]["build"]["target"] == "grafana"


def test_every_service_has_an_image_or_a_build_that_exists() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = ROOT / (service["build"] if isinstance(service["build"], str) else service["build"]["context"])
            assert (context / "Dockerfile").is_file(), name
            assert service["build"]["target"] in STAGES, name
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_api_image_has_no_stream_or_embedded_engine() -> None:
    """The API image installs the enforcer's extras only; the worker image everything but the embedded servers."""
    assert re.findall(r"\[([a-z,]+)\]\"", STAGES["api"]) == ["fastapi,kafka", "standard"]  # + uvicorn[standard]
    assert "local" not in re.findall(r"\[([a-z,]+)\]\"", STAGES["worker"])[0].split(",")
    python = {name: service for name, service in SERVICES.items()
              if "build" in service and service["build"]["target"] in ("api", "worker")}
    assert set(python) == {"migrate", "worker", "admin", "api"}
    for service in python.values():
        expected = "api" if service["command"][0] == "uvicorn" else "worker"
        assert service["build"]["target"] == expected, service["command"]


def test_every_mounted_file_exists_in_the_repository() -> None:
    mounts = 0
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
                mounts += 1
            else:
                assert source in COMPOSE.get("volumes", {}), (name, source)
    assert mounts >= 4
    provisioned = (ROOT / "dashboards/provisioning/dashboards/ratewarden.yaml").read_text()
    assert "/var/lib/grafana/dashboards/ratewarden" in provisioned
    assert any(v.endswith("/var/lib/grafana/dashboards/ratewarden:ro") for v in SERVICES["grafana"]["volumes"])


def test_every_ratewarden_variable_is_a_setting() -> None:
    known = _known_variables()
    used = {key for service in SERVICES.values() for key in (service.get("environment") or {})
            if key.startswith("RATEWARDEN_")}
    used |= set(COMPOSE["x-ratewarden-env"])
    used |= set(re.findall(r"\$\{(RATEWARDEN_[A-Z_]+)", TEXT))
    assert len(used) >= 10
    assert used - known == set()


def test_health_checks_and_start_order() -> None:
    one_shot = _one_shot()
    assert one_shot == {"migrate", "redis-cluster-init"}
    for name, service in SERVICES.items():
        if name not in one_shot:
            assert service["healthcheck"]["test"], name
        for dependency in service.get("depends_on") or {}:
            assert dependency in SERVICES, (name, dependency)
    for name in ("worker", "api"):
        assert SERVICES[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_every_long_running_service_restarts_and_one_shots_do_not() -> None:
    one_shot = _one_shot()
    for name, service in SERVICES.items():
        assert service.get("restart") == ("no" if name in one_shot else "unless-stopped"), name


def test_state_that_must_outlive_a_container_is_on_a_volume() -> None:
    def mount_target(service: str, volume: str) -> str:
        [target] = [v.split(":")[1] for v in SERVICES[service]["volumes"] if v.split(":")[0] == volume]
        return target

    # events the API spilled while Kafka was away are replayed by the next container
    assert mount_target("api", "api-spill") == SERVICES["api"]["environment"]["RATEWARDEN_SPILL_DIR"]
    assert "mkdir -p /app/var/spill" in STAGES["base"] and "chown -R ratewarden /app/var" in STAGES["base"]
    # the broker writes where its volume is (the image's default log directory is not it)
    assert mount_target("kafka", "kafka-data") == SERVICES["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    assert mount_target("clickhouse", "clickhouse-data") == "/var/lib/clickhouse"
    assert mount_target("redis", "redis-data") == "/data" and "--appendonly" in SERVICES["redis"]["command"]
    assert mount_target("prometheus", "prometheus-data") == "/prometheus"
    assert mount_target("grafana", "grafana-data") == "/var/lib/grafana"
    # the pinned plugin is installed where that volume cannot hide it
    plugins = re.search(r"^ENV GF_PATHS_PLUGINS=(\S+)$", STAGES["grafana"], re.M)
    assert plugins and not plugins.group(1).startswith("/var/lib/grafana")


def test_published_ports_listen_on_loopback_unless_told_otherwise() -> None:
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}
    assert set(published) == {"api", "admin", "grafana", "prometheus"}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("${PUBLISH_HOST:-127.0.0.1}:"), (name, port)
            host, outside, inside = _interpolate(port).split(":")
            assert host == "127.0.0.1" and outside == inside, (name, port)


def test_secrets_are_required_and_none_has_a_default() -> None:
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"(:?[?-])?", TEXT)
        assert uses and set(uses) == {":?"}, (secret, uses)  # compose refuses to start without it
    for name, default in re.findall(r"\$\{(\w+):-([^}]*)\}", TEXT):
        if re.search(r"PASSWORD|TOKEN|SECRET", name):
            assert default == "", (name, default)  # an optional one is empty when unset, never a known value
    assert "GF_SECURITY_ADMIN_PASSWORD" in SERVICES["grafana"]["environment"]


def test_images_and_the_grafana_plugin_are_pinned_to_a_release() -> None:
    images = {name: service["image"] for name, service in SERVICES.items() if "image" in service}
    images |= {f"Dockerfile {stage}": image for stage, image in STAGE_IMAGES.items()}
    for name, image in images.items():
        assert re.search(r":v?\d+\.\d+(\.\d+)*(-[a-z0-9.]+)?$", image), (name, image)
    assert images["kafka"].startswith("apache/kafka:4.")
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:25.8.")  # an LTS branch
    assert STAGE_IMAGES["grafana"].startswith("grafana/grafana:12.")
    # the plugin is installed into the image at a fixed version: a (re)started container fetches nothing
    plugin = re.search(r"ARG CLICKHOUSE_PLUGIN_VERSION=(\S+)", STAGES["grafana"])
    assert plugin and re.fullmatch(r"\d+\.\d+\.\d+", plugin.group(1))
    assert "plugins install grafana-clickhouse-datasource \"$CLICKHOUSE_PLUGIN_VERSION\"" in STAGES["grafana"]
    assert not {"GF_INSTALL_PLUGINS", "GF_PLUGINS_PREINSTALL", "GF_PLUGINS_PREINSTALL_SYNC"} & set(
        SERVICES["grafana"]["environment"])


def test_clickhouse_credentials_travel_beside_a_url_without_them() -> None:
    env = COMPOSE["x-clickhouse-env"]
    assert env["RATEWARDEN_CLICKHOUSE_URL"] == "http://clickhouse:8123"  # no user:password@ to escape
    assert env["RATEWARDEN_CLICKHOUSE_USER"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert env["RATEWARDEN_CLICKHOUSE_PASSWORD"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
    assert not re.search(r"://[^/\s]*@", TEXT)  # no credentials in any URL
    for name in ("migrate", "worker", "admin"):
        assert SERVICES[name]["environment"]["RATEWARDEN_CLICKHOUSE_PASSWORD"].startswith("${CLICKHOUSE_PASSWORD:?")
        assert SERVICES[name]["environment"]["RATEWARDEN_KAFKA_BOOTSTRAP"] == "kafka:9092"  # both anchors merged
    # the demo API faces clients and never reads ClickHouse: it holds none of its credentials
    assert not [key for key in SERVICES["api"]["environment"] if "CLICKHOUSE" in key]


def test_the_topic_replication_factor_is_a_setting_defaulting_to_the_one_broker() -> None:
    assert COMPOSE["x-ratewarden-env"]["RATEWARDEN_TOPIC_REPLICATION_FACTOR"] == \
        "${RATEWARDEN_TOPIC_REPLICATION_FACTOR:-1}"


def test_prometheus_scrapes_every_python_service_where_it_serves_metrics() -> None:
    config_mount = next(volume for volume in SERVICES["prometheus"]["volumes"]
                        if volume.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((ROOT / config_mount.split(":")[0]).read_text())
    targets = {job["job_name"]: (job.get("metrics_path", "/metrics"), job["static_configs"][0]["targets"])
               for job in config["scrape_configs"]}
    worker_address = SERVICES["worker"]["environment"]["RATEWARDEN_WORKER_METRICS_ADDRESS"]
    assert worker_address.startswith("0.0.0.0:")  # reachable from the Prometheus container
    assert targets == {
        "ratewarden-api": ("/metrics", [f"api:{_listens_on('api')}"]),
        "ratewarden-worker": ("/metrics", [f"worker:{worker_address.rsplit(':', 1)[1]}"]),
        "ratewarden-admin": ("/metrics", [f"admin:{_listens_on('admin')}"]),
    }
    # the worker's health check reads the same endpoint
    health = " ".join(SERVICES["worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{worker_address.rsplit(':', 1)[1]}/metrics" in health


def test_grafana_has_prometheus_and_clickhouse_as_provisioned_datasources() -> None:
    grafana = SERVICES["grafana"]
    folder = ROOT / "dashboards/provisioning/datasources"
    datasources = {ds["uid"]: ds for path in sorted(folder.glob("*.yaml"))
                   for ds in yaml.safe_load(path.read_text())["datasources"]}
    assert datasources["ratewarden-prometheus"]["type"] == "prometheus"
    assert datasources["ratewarden-clickhouse"]["type"] == "grafana-clickhouse-datasource"
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # every variable the provisioning files read is set for Grafana
    for path in folder.glob("*.yaml"):
        for variable in re.findall(r"\$\{(\w+)\}", path.read_text()):
            assert variable in grafana["environment"], (path.name, variable)


def test_the_cluster_profile_is_a_healthy_redis_cluster_formed_once_its_nodes_are_healthy() -> None:
    cluster = _in_profile("cluster")
    nodes = {"redis-c1", "redis-c2", "redis-c3"}
    assert set(cluster) == nodes | {"redis-cluster-init"}
    assert all("profiles" not in service for name, service in SERVICES.items() if name not in cluster)  # optional
    for name in nodes:
        node = cluster[name]
        assert node["image"].startswith(("valkey/valkey:", "redis:"))
        command = " ".join(node["command"])
        assert "--cluster-enabled yes" in command and "--cluster-config-file" in command
        assert f"--cluster-announce-hostname {name}" in command
        assert node["healthcheck"]["test"], name
    init = cluster["redis-cluster-init"]
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in nodes}
    script = " ".join(init["command"])
    assert "--cluster create" in script and script.count(":6379") >= 3 and "--cluster-yes" in script
    assert "redis+cluster://redis-c1:6379,redis-c2:6379,redis-c3:6379" in TEXT
    # the Python services take the cluster's URL from the environment; without it, the single Redis
    assert COMPOSE["x-ratewarden-env"]["RATEWARDEN_REDIS_URL"] == "${RATEWARDEN_REDIS_URL:-redis://redis:6379/0}"
