"""API keys decide the tenant (never span attributes); both receivers speak TLS when given a certificate."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.error
import urllib.request

import grpc
import pytest
from collector_process import CollectorProcess, sql_rows
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def _spans(service: str, claimed_tenant: str = "") -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attributes = {"tracehouse.tenant": claimed_tenant} if claimed_tenant else {}
    with provider.get_tracer("sec").start_as_current_span("op", attributes=attributes):
        pass
    return list(memory.get_finished_spans())


def _tenants(data_dir, service: str) -> list[str]:
    rows = sql_rows(data_dir, f"SELECT TenantId FROM otel_traces WHERE ServiceName = '{service}' ORDER BY TenantId")
    return [row["TenantId"] for row in rows]


def test_api_keys_decide_the_tenant(tmp_path):
    hashed_key = "key-from-file"
    config = tmp_path / "tracehouse.toml"
    config.write_text(f'[api_keys]\n"sha256:{hashlib.sha256(hashed_key.encode()).hexdigest()}" = "hashed-tenant"\n')
    collector = CollectorProcess(
        tmp_path / "data",
        "--config",
        str(config),
        env={"TRACEHOUSE_API_KEYS": "key-a=acme, key-b=globex"},
    ).start()
    try:
        grpc_a = GrpcExporter(
            endpoint=collector.grpc_endpoint, insecure=True, headers={"authorization": "Bearer key-a"}
        )
        assert grpc_a.export(_spans("by-grpc", claimed_tenant="evil-corp")) == SpanExportResult.SUCCESS
        http_b = HttpExporter(endpoint=collector.traces_url, headers={"x-api-key": "key-b"})
        assert http_b.export(_spans("by-http")) == SpanExportResult.SUCCESS
        hashed = HttpExporter(endpoint=collector.traces_url, headers={"authorization": f"Bearer {hashed_key}"})
        assert hashed.export(_spans("by-hashed-key")) == SpanExportResult.SUCCESS

        # The same request under two keys is two tenants' data, not a retry.
        same = _spans("same-body")
        assert grpc_a.export(same) == SpanExportResult.SUCCESS
        grpc_b = GrpcExporter(
            endpoint=collector.grpc_endpoint, insecure=True, headers={"authorization": "Bearer key-b"}
        )
        assert grpc_b.export(same) == SpanExportResult.SUCCESS

        for missing_or_wrong in (None, "Bearer nope"):
            headers = {"Content-Type": "application/x-protobuf"}
            if missing_or_wrong:
                headers["Authorization"] = missing_or_wrong
            request = urllib.request.Request(collector.traces_url, data=b"", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401
            assert status_pb2.Status.FromString(refused.value.read()).code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        with grpc.insecure_channel(collector.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as refused_grpc:
            channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(b"", timeout=10)
        assert refused_grpc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "API key" in refused_grpc.value.details()

        assert _tenants(collector.data_dir, "by-grpc") == ["acme"]
        assert _tenants(collector.data_dir, "by-http") == ["globex"]
        assert _tenants(collector.data_dir, "by-hashed-key") == ["hashed-tenant"]
        assert _tenants(collector.data_dir, "same-body") == ["acme", "globex"]
        assert "key-a" not in (collector.data_dir / "collector.json").read_text()
    finally:
        collector.kill()


@pytest.fixture
def certificate(tmp_path):
    """A throwaway CA and a server certificate it signed for localhost and 127.0.0.1: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "key.pem", "server.csr", "cert.pem"))
    ext = tmp_path / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    steps = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tracehouse test CA",
            "-keyout",
            ca_key,
            "-out",
            ca,
        ],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            cert,
        ],
    ]
    for step in steps:
        subprocess.run(["openssl", *map(str, step)], check=True, capture_output=True)
    return ca, cert, key


def test_tls_on_both_receivers(tmp_path, certificate, monkeypatch):
    ca, cert, key = certificate
    # requests lets these variables override the exporter's own CA file; this machine sets them.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    collector = CollectorProcess(tmp_path / "data", "--tls-cert-file", str(cert), "--tls-key-file", str(key)).start()
    try:
        assert json.loads((collector.data_dir / "collector.json").read_text())["tls"] is True
        assert collector.http_endpoint.startswith("https://")
        secure = GrpcExporter(
            endpoint=collector.grpc_endpoint,
            credentials=grpc.ssl_channel_credentials(root_certificates=ca.read_bytes()),
        )
        assert secure.export(_spans("tls-grpc")) == SpanExportResult.SUCCESS
        https = HttpExporter(endpoint=collector.traces_url, certificate_file=str(ca))
        assert https.export(_spans("tls-http")) == SpanExportResult.SUCCESS
        plaintext = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=3)
        assert plaintext.export(_spans("tls-plaintext")) == SpanExportResult.FAILURE
        assert [_tenants(collector.data_dir, s) for s in ("tls-grpc", "tls-http", "tls-plaintext")] == [[""], [""], []]
    finally:
        collector.kill()


def test_half_a_tls_configuration_is_refused(tmp_path, certificate):
    _ca, cert, _key = certificate
    result = subprocess.run(
        [*CollectorProcess(tmp_path / "d").command(), "--tls-cert-file", str(cert)], capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"tls_cert_file and tls_key_file go together" in result.stderr
