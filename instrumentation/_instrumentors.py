"""Find the OpenInference instrumentors that are installed and turn them on.

OpenInference packages register their instrumentor under the `openinference_instrumentor` entry-point
group; older releases that do not are found by importing their module from `KNOWN`. An instrumentor whose
library is missing (the package is installed, the SDK it wraps is not) is skipped without a word, as is a
package that fails to import.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("tracehouse.instrumentation")

ENTRY_POINT_GROUP = "openinference_instrumentor"

# name -> (module, class), for releases without the entry point.
KNOWN: dict[str, tuple[str, str]] = {
    "openai": ("openinference.instrumentation.openai", "OpenAIInstrumentor"),
    "anthropic": ("openinference.instrumentation.anthropic", "AnthropicInstrumentor"),
    "langchain": ("openinference.instrumentation.langchain", "LangChainInstrumentor"),
    "llama_index": ("openinference.instrumentation.llama_index", "LlamaIndexInstrumentor"),
    "bedrock": ("openinference.instrumentation.bedrock", "BedrockInstrumentor"),
    "vertexai": ("openinference.instrumentation.vertexai", "VertexAIInstrumentor"),
    "google_genai": ("openinference.instrumentation.google_genai", "GoogleGenAIInstrumentor"),
    "mistralai": ("openinference.instrumentation.mistralai", "MistralAIInstrumentor"),
    "groq": ("openinference.instrumentation.groq", "GroqInstrumentor"),
    "litellm": ("openinference.instrumentation.litellm", "LiteLLMInstrumentor"),
    "dspy": ("openinference.instrumentation.dspy", "DSPyInstrumentor"),
    "crewai": ("openinference.instrumentation.crewai", "CrewAIInstrumentor"),
    "haystack": ("openinference.instrumentation.haystack", "HaystackInstrumentor"),
    "instructor": ("openinference.instrumentation.instructor", "InstructorInstrumentor"),
    "openai_agents": ("openinference.instrumentation.openai_agents", "OpenAIAgentsInstrumentor"),
    "smolagents": ("openinference.instrumentation.smolagents", "SmolagentsInstrumentor"),
}


def _loaders() -> dict[str, Callable[[], Any]]:
    """name -> a function returning the instrumentor class (it may raise ImportError)."""
    loaders: dict[str, Callable[[], Any]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaders.setdefault(entry.name, entry.load)
    for name, (module, attribute) in KNOWN.items():
        loaders.setdefault(name, lambda m=module, a=attribute: getattr(importlib.import_module(m), a))
    return loaders


def enable(
    provider: TracerProvider, wanted: Iterable[str] | None, running: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Instrument every installed instrumentor (or those in `wanted`) not yet in `running`, with `provider`.
    Returns (enabled now, wanted but unavailable)."""
    try:  # every instrumentor package depends on it; without it none is installed
        from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
    except ImportError:
        return [], [] if wanted is None else list(wanted)

    loaders = _loaders()
    names = sorted(loaders) if wanted is None else list(dict.fromkeys(wanted))
    enabled: list[str] = []
    unavailable: list[str] = []
    for name in names:
        if name in running:
            continue
        loader = loaders.get(name)
        try:
            if loader is None:
                raise ImportError(name)
            instrumentor = loader()()
            if get_dependency_conflicts(instrumentor.instrumentation_dependencies()) is not None:
                unavailable.append(name)  # the library it wraps is missing or too old
                continue
            instrumentor.instrument(tracer_provider=provider)
        except ImportError:
            unavailable.append(name)
            continue
        except Exception:  # a broken instrumentor must not take the app down
            log.exception("tracehouse: the %s instrumentor failed to start", name)
            unavailable.append(name)
            continue
        if getattr(instrumentor, "is_instrumented_by_opentelemetry", True):
            running[name] = instrumentor
            enabled.append(name)
        else:
            unavailable.append(name)
    return enabled, unavailable
