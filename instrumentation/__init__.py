"""App-side instrumentation: one call sets up OTLP export and the installed OpenInference instrumentors.

```python
from tracehouse.instrumentation import chain, setup, step, tagged

setup(service_name="support-bot")          # OTLP to OTEL_EXPORTER_OTLP_ENDPOINT or 127.0.0.1:4317

@chain                                     # a CHAIN span per call, parent of the LLM calls inside
def answer(question: str) -> str: ...

with tagged(user="u-42", session="s-9", feature="support", prompt_version="v3"):
    answer("Where is my order?")
    ids = current_ids()                    # the span's hex ids, for the front end

score("thumbs", True, trace_id=ids.trace_id, span_id=ids.span_id)   # POST /v1/scores, never raises

submitted = batch.submit(client, [batch.request("t-1", model="gpt-4o-mini", messages=[...])], purpose="summaries")
batch.collect(client, submitted.batch_id, handler)   # later, any process: one LLM span per request
```

Only the plain install's packages are used (OpenTelemetry SDK, OTLP exporters, openinference-instrumentation).
The names below load their modules on first use, so `tracehouse.instrumentation.attributes` (the attribute
names the collector reads too) comes without the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracehouse.instrumentation import _batch as batch
    from tracehouse.instrumentation import _prompts as prompts
    from tracehouse.instrumentation._context import ContextSpanProcessor, tagged
    from tracehouse.instrumentation._provider import (
        MAX_EXPORT_BATCH_SIZE,
        MAX_QUEUE_SIZE,
        enabled_instrumentors,
        flush,
        setup,
        shutdown,
    )
    from tracehouse.instrumentation._scores import SpanIds, current_ids, score
    from tracehouse.instrumentation._steps import Step, chain, step

_EXPORTS = {
    "ContextSpanProcessor": "_context",
    "tagged": "_context",
    "MAX_EXPORT_BATCH_SIZE": "_provider",
    "MAX_QUEUE_SIZE": "_provider",
    "enabled_instrumentors": "_provider",
    "flush": "_provider",
    "setup": "_provider",
    "shutdown": "_provider",
    "SpanIds": "_scores",
    "current_ids": "_scores",
    "score": "_scores",
    "Step": "_steps",
    "chain": "_steps",
    "step": "_steps",
}
# Modules exposed under a public name: `from tracehouse.instrumentation import prompts`.
_MODULES = {"batch": "_batch", "prompts": "_prompts"}

__all__ = [
    "MAX_EXPORT_BATCH_SIZE",
    "MAX_QUEUE_SIZE",
    "ContextSpanProcessor",
    "SpanIds",
    "Step",
    "batch",
    "chain",
    "current_ids",
    "enabled_instrumentors",
    "flush",
    "prompts",
    "score",
    "setup",
    "shutdown",
    "step",
    "tagged",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        submodule = importlib.import_module(f"{__name__}.{_MODULES[name]}")
        globals()[name] = submodule
        return submodule
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
