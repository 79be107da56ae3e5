"""An app that configures tracehouse.instrumentation from the standard OTEL_* environment only, run by
tests/test_instrumented_setup.py in its own process (the global tracer provider can be set once per process).

    python instrumented_setup_app.py BURST_SIZE

It calls setup() twice, tags nested blocks, runs sync, async and failing steps and a burst of spans, then
prints JSON with what it saw in-process and the ids the test looks up in the collector.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from opentelemetry import trace

from tracehouse.instrumentation import chain, enabled_instrumentors, setup, shutdown, step, tagged


def ids(span: trace.Span) -> dict[str, str]:
    context = span.get_span_context()
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@chain
def add(a: int, b: int) -> int:
    return a + b


@chain("fetch-async")
async def fetch(city: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    with step("parse", input=city) as parsed:
        parsed.set_output({"city": city, "ok": True})
        inner = ids(trace.get_current_span())
    return {"city": city, "parse": inner}


@chain("explode")
def explode() -> None:
    raise ValueError("the step failed")


def main() -> None:
    burst = int(sys.argv[1])
    warnings = Warnings()
    logging.getLogger("tracehouse.instrumentation").addHandler(warnings)
    first = setup(service_name="svc-setup")
    second = setup(service_name="svc-setup")
    third = setup(service_name="svc-other")  # a different configuration: ignored with a warning
    out: dict[str, Any] = {
        "same_provider": first is second is third,
        "global_provider": trace.get_tracer_provider() is first,
        "instrumentors": list(enabled_instrumentors()),
        "warnings": warnings.messages,
    }

    with (
        tagged(user="outer-user", session="s-1", metadata={"team": "a", "level": 1}, tags=["x"]),
        tagged(user="inner-user", feature="nested", metadata={"level": 2}, tags=["y"]),
        step("tagged-step") as current,
    ):
        out["tagged"] = ids(current.span)
    with step("sum-of-two"):
        out["add"] = add(2, 3)
    out["fetch"] = asyncio.run(fetch("Oslo"))
    try:
        explode()
    except ValueError:
        out["explode_raised"] = True
    try:

        @chain
        def generator() -> Any:
            yield 1

    except TypeError:
        out["generator_refused"] = True

    tracer = trace.get_tracer("burst")
    with tracer.start_as_current_span("burst-root") as root:
        out["burst"] = ids(root)
        for index in range(burst):
            tracer.start_span(f"burst-{index % 10}").end()
    shutdown()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
