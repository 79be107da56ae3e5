"""Fuzz the collector's OTLP surface: tens of thousands of mutated requests (tests/otlp_mutator.py) over
OTLP/HTTP (protobuf and JSON, some gzip'ed) and OTLP/gRPC, from a few client threads, to one real
collector. The oracle is the product's promise: the collector never dies and /healthz answers, every
answer is an OTLP status (no 5xx but 503 with Retry-After, which is retried as an exporter would), every
span acknowledged is stored exactly once, nothing is dead-lettered and the log holds no traceback.

Deterministic for a seed: TRACEHOUSE_FUZZ_SEED picks it (printed on failure), TRACEHOUSE_FUZZ_REQUESTS
sets the count (run longer locally). A failure saves the seed and the failing requests under the test's
tmp dir; `python tests/otlp_mutator.py SEED INDEX DIR` rebuilds any case.
"""

from __future__ import annotations

import http.client
import itertools
import os
import resource
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
import pytest
from collector_process import CollectorProcess, sql_rows, wait_drained
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otlp_mutator import EXPORT_METHOD, JSON, MAX_REQUEST_BYTES, PROTOBUF, Case, Reference, make_case, reference

SEED = int(os.environ.get("TRACEHOUSE_FUZZ_SEED", "1234567"))
REQUESTS = int(os.environ.get("TRACEHOUSE_FUZZ_REQUESTS", "12000"))
# Acknowledgement waits for the spool's fsync: enough concurrent clients keep the collector's CPU busy.
THREADS = 32
MAX_ATTEMPTS = 8  # a request refused with 503 / UNAVAILABLE is retried this often before it counts as lost
MAX_SAVED_PER_KIND = 5
HTTP_OK_STATUSES = {200, 400, 413, 415}
GRPC_OK_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
}
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"


@dataclass
class Outcome:
    """The final answer to one case (after retries of 503 / UNAVAILABLE)."""

    case: Case
    ref: Reference | None
    answer: str  # "http 200", "grpc INVALID_ARGUMENT", "error ..." for a transport failure
    acknowledged: bool = False
    rejected: int = 0
    message: str = ""
    attempts: int = 1

    def describe(self) -> dict:
        return {
            **self.case.describe(),
            "answer": self.answer,
            "acknowledged": self.acknowledged,
            "rejected_spans": self.rejected,
            "message": self.message[:2000],
            "attempts": self.attempts,
            "reference_spans": None if self.ref is None else len(self.ref.keys),
        }


@dataclass
class Failure:
    kind: str
    detail: str
    cases: list[int] = field(default_factory=list)


class Fuzzer:
    """Sends cases 0..count-1 from a few threads and checks every answer against the OTLP rules."""

    def __init__(self, collector: CollectorProcess, seed: int, count: int) -> None:
        self.collector = collector
        self.seed = seed
        self.count = count
        self.outcomes: dict[int, Outcome] = {}
        self.failures: list[Failure] = []
        self.notes: Counter[str] = Counter()
        self.retried = 0
        self._lock = threading.Lock()
        self._next = itertools.count()
        host, port = collector.http_endpoint.removeprefix("http://").rsplit(":", 1)
        self._http_address = (host, int(port))
        self._channel = grpc.insecure_channel(
            collector.grpc_endpoint.removeprefix("http://"),
            options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
        )
        self._export = self._channel.unary_unary(EXPORT_METHOD)  # identity (de)serializers: raw bytes

    def fail(self, kind: str, detail: str, *cases: int) -> None:
        with self._lock:
            self.failures.append(Failure(kind, detail, list(cases)))

    def run(self) -> float:
        started = time.monotonic()
        threads = [threading.Thread(target=self._worker, name=f"fuzz-{n}") for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._channel.close()
        return time.monotonic() - started

    def _worker(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while (index := next(self._next)) < self.count:
            case = make_case(self.seed, index)
            ref = reference(case)
            outcome = Outcome(case, ref, "unsent")
            for attempt in range(1, MAX_ATTEMPTS + 1):
                outcome.attempts = attempt
                if case.transport == "http":
                    if connection is None:
                        connection = http.client.HTTPConnection(*self._http_address, timeout=60)
                    retry_after = self._send_http(connection, outcome)
                    if retry_after == -1.0:  # the connection broke: start a new one
                        connection.close()
                        connection = None
                else:
                    retry_after = self._send_grpc(outcome)
                if retry_after is None or retry_after < 0:
                    break
                with self._lock:
                    self.retried += 1
                time.sleep(min(retry_after, 5.0))
            else:
                self.fail("never accepted", f"still refused as unavailable after {MAX_ATTEMPTS} attempts", index)
            with self._lock:
                self.outcomes[index] = outcome
        if connection is not None:
            connection.close()

    def _send_http(self, connection: http.client.HTTPConnection, outcome: Outcome) -> float | None:
        """Record the answer in `outcome`; return seconds to wait before a retry, -1 after a broken connection."""
        case = outcome.case
        try:
            connection.request("POST", "/v1/traces", body=case.body, headers=case.headers())
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            outcome.answer = f"error {type(exc).__name__}: {exc}"
            self.fail("http transport error", outcome.answer, case.index)
            return -1.0
        status = response.status
        outcome.answer = f"http {status}"
        reply_json = (response.getheader("Content-Type") or "").startswith(JSON)
        if status == 503:
            retry_after = response.getheader("Retry-After")
            if retry_after is None or not retry_after.isdigit():
                self.fail("503 without Retry-After", body[:300].decode(errors="replace"), case.index)
                return None
            return float(retry_after)
        if status not in HTTP_OK_STATUSES:
            self.fail(f"http {status}", body[:500].decode(errors="replace"), case.index)
            return None
        expected_type = JSON if case.json_body else PROTOBUF
        if status != 415 and not (response.getheader("Content-Type") or "").startswith(expected_type):
            self.fail("reply content type", f"{response.getheader('Content-Type')} for {expected_type}", case.index)
        if status == 200:
            self._acknowledged(outcome, body, reply_json)
        else:
            self._refused(outcome, body, reply_json)
        return None

    def _send_grpc(self, outcome: Outcome) -> float | None:
        case = outcome.case
        compression = grpc.Compression.Gzip if case.compression == "gzip" else grpc.Compression.NoCompression
        try:
            body = self._export(case.body, timeout=60, compression=compression)
        except grpc.RpcError as error:
            code = error.code()
            outcome.answer = f"grpc {code.name}"
            outcome.message = error.details() or ""
            if code not in GRPC_OK_CODES:
                self.fail(f"grpc {code.name}", outcome.message[:500], case.index)
                return None
            if code == grpc.StatusCode.UNAVAILABLE:
                trailers = dict(error.trailing_metadata() or ())
                if RETRY_INFO_TRAILER not in trailers:
                    self.fail("UNAVAILABLE without RetryInfo", outcome.message[:300], case.index)
                    return None
                return 1.0
            if not outcome.message:
                self.fail("refusal without a message", outcome.answer, case.index)
            if case.pristine:
                self.fail("valid request refused", f"{outcome.answer}: {outcome.message[:300]}", case.index)
            elif outcome.ref is not None:
                self.note(f"valid by reference, refused: {outcome.answer}: {outcome.message}")
            return None
        outcome.answer = "grpc OK"
        self._acknowledged(outcome, body, False)
        return None

    def note(self, text: str) -> None:
        with self._lock:
            self.notes[" ".join(text.split())[:160]] += 1

    def _acknowledged(self, outcome: Outcome, body: bytes, reply_json: bool) -> None:
        case = outcome.case
        try:
            if reply_json:
                partial = orjson.loads(body).get("partialSuccess") or {}
                rejected, message = int(partial.get("rejectedSpans") or 0), partial.get("errorMessage") or ""
            else:
                partial = ExportTraceServiceResponse.FromString(body).partial_success
                rejected, message = partial.rejected_spans, partial.error_message
        except (ValueError, AttributeError, DecodeError) as exc:
            self.fail("unreadable ExportTraceServiceResponse", f"{exc}: {body[:200]!r}", case.index)
            return
        outcome.acknowledged, outcome.rejected, outcome.message = True, rejected, message
        if outcome.ref is None:
            self.fail("acknowledged a body that is not a valid request", outcome.answer, case.index)
        elif not 0 <= rejected <= len(outcome.ref.keys):
            self.fail("rejected_spans out of range", f"{rejected} of {len(outcome.ref.keys)} spans", case.index)
        elif case.pristine and (rejected or message):
            self.fail("valid request not fully accepted", f"{rejected} rejected: {message[:300]}", case.index)

    def _refused(self, outcome: Outcome, body: bytes, reply_json: bool) -> None:
        case = outcome.case
        try:
            if reply_json:
                outcome.message = orjson.loads(body).get("message") or ""
            else:
                outcome.message = status_pb2.Status.FromString(body).message
        except (ValueError, AttributeError, DecodeError) as exc:
            self.fail("unreadable google.rpc.Status", f"{outcome.answer}: {exc}: {body[:200]!r}", case.index)
            return
        if not outcome.message:
            self.fail("refusal without a message", outcome.answer, case.index)
        if case.pristine and case.content_type == "":
            self.fail("valid request refused", f"{outcome.answer}: {outcome.message[:300]}", case.index)
        elif outcome.ref is not None:
            if outcome.answer == "http 413" and outcome.ref.decoded_bytes <= MAX_REQUEST_BYTES:
                self.fail("413 under the size limit", f"{outcome.ref.decoded_bytes} bytes decoded", case.index)
            self.note(f"valid by reference, refused: {outcome.answer}: {outcome.message}")


class HealthWatch:
    """Polls /healthz during the run: a collector that stops answering or exits is a failure."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        self.problems: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz", daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        url = self.collector.http_endpoint + "/healthz"
        while not self._stop.wait(0.25):
            self.polls += 1
            if not self.collector.alive():
                self.problems.append(f"collector exited with {self.collector.proc.returncode}")
                return
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if response.status != 200:
                        self.problems.append(f"/healthz answered {response.status}")
            except OSError as exc:
                self.problems.append(f"/healthz failed: {exc}")


def _valid_key(key: tuple[str, str]) -> bool:
    """Only spans with well-formed, non-zero ids can be stored: others never make a row to find."""
    trace_id, span_id = key
    return len(trace_id) == 32 and len(span_id) == 16 and trace_id.strip("0") != "" and span_id.strip("0") != ""


def check_storage(fuzzer: Fuzzer, stored: dict[tuple[str, str], int]) -> dict[str, int]:
    """Every acknowledged span stored exactly once, nothing else stored. Requests whose spans share ids
    (retries, duplicate spans, byte mutations that hit an id) are accounted together as one group."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict[tuple[str, str], int] = {}
    for index, outcome in fuzzer.outcomes.items():
        if outcome.ref is None:
            continue
        find(index)
        for key in outcome.ref.keys:
            if _valid_key(key):
                if key in owner:
                    parent[find(index)] = find(owner[key])
                else:
                    owner[key] = index
    # A retried body is stored once: count each digest once, with the rejections of its first answer.
    by_digest: dict[bytes, list[Outcome]] = defaultdict(list)
    for outcome in fuzzer.outcomes.values():
        if outcome.acknowledged and outcome.ref is not None:
            by_digest[outcome.ref.digest].append(outcome)
    expected: Counter[int] = Counter()
    members: dict[int, list[int]] = defaultdict(list)
    for outcomes in by_digest.values():
        first = outcomes[0]
        group = find(first.case.index)
        expected[group] += len(first.ref.keys) - max(o.rejected for o in outcomes)
        members[group].extend(o.case.index for o in outcomes)
    actual: Counter[int] = Counter()
    unknown = 0
    for key, n in stored.items():
        if key in owner:
            actual[find(owner[key])] += n
        else:
            unknown += n
    for index, outcome in fuzzer.outcomes.items():
        # Unmutated requests: not just the count, every span id exactly once.
        if outcome.case.pristine and outcome.acknowledged and outcome.ref is not None:
            wrong = {k: stored.get(k, 0) for k in outcome.ref.keys if stored.get(k, 0) != 1}
            if wrong:
                fuzzer.fail("span of a valid request not stored exactly once", f"rows per id: {wrong}", index)
    if unknown:
        sample = [k for k in stored if k not in owner][:5]
        fuzzer.fail("stored spans that no request sent", f"{unknown} rows, e.g. {sample}")
    for group in set(expected) | set(actual):
        if expected[group] == actual[group]:
            continue
        cases = sorted(members.get(group) or [i for i in fuzzer.outcomes if find(i) == group])[:20]
        kind = "acknowledged spans lost" if actual[group] < expected[group] else "spans stored more than acknowledged"
        sent = {fuzzer.outcomes[i].answer for i in cases}
        fuzzer.fail(kind, f"expected {expected[group]} rows, found {actual[group]} (answers {sorted(sent)})", *cases)
    return {"expected_rows": sum(expected.values()), "stored_rows": sum(stored.values())}


def save_failures(fuzzer: Fuzzer, out: Path) -> Path:
    """The seed, every failure and the bodies of the first cases of each kind, for reproduction."""
    out.mkdir(parents=True, exist_ok=True)
    saved: Counter[str] = Counter()
    for failure in fuzzer.failures:
        for index in failure.cases:
            if saved[failure.kind] >= MAX_SAVED_PER_KIND:
                break
            saved[failure.kind] += 1
            outcome = fuzzer.outcomes.get(index)
            case = outcome.case if outcome else make_case(fuzzer.seed, index)
            (out / f"case-{index}.body").write_bytes(case.body)
            meta = outcome.describe() if outcome else case.describe()
            (out / f"case-{index}.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    summary = {
        "seed": fuzzer.seed,
        "requests": fuzzer.count,
        "failures": [{"kind": f.kind, "detail": f.detail, "cases": f.cases} for f in fuzzer.failures],
    }
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return out


def _report(fuzzer: Fuzzer, saved: Path) -> str:
    kinds = Counter(f.kind for f in fuzzer.failures)
    lines = [f"fuzz seed {fuzzer.seed} ({fuzzer.count} requests): {len(fuzzer.failures)} failure(s), saved in {saved}"]
    lines += [f"  {n:6d} x {kind}" for kind, n in kinds.most_common()]
    shown: Counter[str] = Counter()
    for failure in fuzzer.failures:
        if shown[failure.kind] < 3:
            shown[failure.kind] += 1
            lines.append(f"  - {failure.kind}: {failure.detail[:300]} cases {failure.cases[:5]}")
    lines.append(
        f"  reproduce: TRACEHOUSE_FUZZ_SEED={fuzzer.seed} TRACEHOUSE_FUZZ_REQUESTS={fuzzer.count} pytest {__file__}"
    )
    lines.append("  one case: python tests/otlp_mutator.py SEED INDEX OUT_DIR")
    return "\n".join(lines)


def _tracebacks(log: str) -> dict[str, tuple[int, str]]:
    """Tracebacks in a log, by their last frame and exception line: (count, the first one with its context)."""
    found: dict[str, tuple[int, str]] = {}
    lines = log.splitlines()
    for start, line in enumerate(lines):
        if not line.startswith("Traceback"):
            continue
        end = start + 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            end += 1
        block = lines[max(0, start - 1) : end + 1]
        frames = [x.strip() for x in block if x.strip().startswith("File ")]
        exception = lines[end] if end < len(lines) else "?"
        summary = f"{exception[:160]} at {frames[-1] if frames else '?'}"
        count, example = found.get(summary, (0, "\n".join(block)[-2500:]))
        found[summary] = (count + 1, example)
    return found


def _cpu_seconds(collector: CollectorProcess) -> float:
    """User + system CPU time of the collector process so far (Linux /proc), to see which side is the limit."""
    try:
        fields = Path(f"/proc/{collector.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


@pytest.fixture
def fuzz_collector(tmp_path):
    proc = CollectorProcess(
        tmp_path / "data", "--max-request-bytes", str(MAX_REQUEST_BYTES), "--batch-linger-ms", "2000"
    ).start()
    yield proc
    proc.kill()


def test_fuzzed_otlp_requests_crash_nothing_and_lose_nothing(fuzz_collector, tmp_path):
    fuzzer = Fuzzer(fuzz_collector, SEED, REQUESTS)
    with HealthWatch(fuzz_collector) as health:
        elapsed = fuzzer.run()
    answers = Counter(o.answer for o in fuzzer.outcomes.values())
    client_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    print(
        f"\nfuzz seed {SEED}: {REQUESTS} requests in {elapsed:.1f} s ({REQUESTS / elapsed:.0f} requests/s; CPU s: "
        f"client {client_cpu:.0f}, collector {_cpu_seconds(fuzz_collector):.0f}), "
        f"{fuzzer.retried} retries after 503/UNAVAILABLE, answers {dict(answers.most_common())}"
    )
    for text, n in fuzzer.notes.most_common(15):
        print(f"  note {n:5d} x {text}")
    for problem in health.problems[:5]:
        fuzzer.fail("collector health", problem)
    assert len(fuzzer.outcomes) == REQUESTS
    if fuzz_collector.alive():
        wait_drained(fuzz_collector.data_dir, timeout=120)
        rows = sql_rows(
            fuzz_collector.data_dir, "SELECT TraceId AS t, SpanId AS s, count() AS n FROM otel_traces GROUP BY t, s"
        )
        stored = {(row["t"], row["s"]): int(row["n"]) for row in rows}
        totals = check_storage(fuzzer, stored)
        print(f"  rows: {totals}")
    else:
        fuzzer.fail("collector exited", f"exit code {fuzz_collector.proc.returncode}")
    deadletter = fuzz_collector.data_dir / "deadletter"
    letters = sorted(p.name for p in deadletter.iterdir()) if deadletter.is_dir() else []
    if letters:
        reasons = [orjson.loads((deadletter / n).read_bytes()) for n in letters if n.endswith(".json")][:3]
        fuzzer.fail("dead-lettered", f"{len(letters)} file(s) in deadletter/: {str(reasons)[:1500]}")
    for summary, (n, example) in _tracebacks(fuzz_collector.log()).items():
        fuzzer.fail("traceback in the collector log", f"{n} x {summary}\n{example}")
    if fuzzer.failures:
        saved = save_failures(fuzzer, tmp_path / f"fuzz-failures-seed{SEED}")
        pytest.fail(_report(fuzzer, saved), pytrace=False)
