"""Which policy applies to an attribute key: configured keys and globs, built-in defaults for
credential-looking keys, and the prompt/response keys that content-free mode drops."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from tracehouse.collector.columns import COPIED_FROM

KEEP, SCAN, REDACT, HASH, DROP = "keep", "scan", "redact", "hash", "drop"

# Keys whose whole value is a credential, whatever it looks like (matched on the lower-cased key).
DEFAULT_KEY_POLICIES: tuple[tuple[str, str], ...] = tuple(
    (glob, REDACT)
    for glob in (
        "*password*",
        "*passwd*",
        "*secret*",
        "*api_key*",
        "*apikey*",
        "*api-key*",
        "*authorization*",
        "*access_token*",
        "*refresh_token*",
        "*auth_token*",
        "*cookie*",
        "*private_key*",
    )
)

# Prompt and response content in the conventions tracehouse normalizes; content-free mode drops these
# from span and event attributes (globs).
CONTENT_KEYS: tuple[str, ...] = (
    "input.value",
    "output.value",
    "llm.input_messages.*",
    "llm.output_messages.*",
    "llm.prompts.*",
    "llm.prompt_template.template",
    "llm.prompt_template.variables",
    "retrieval.documents.*",
    "reranker.*.documents.*",
    "embedding.embeddings.*",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.prompt.*",
    "gen_ai.completion",
    "gen_ai.completion.*",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.event.content",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "ai.prompt",
    "ai.prompt.*",
    "ai.response.text",
    "ai.response.object",
    "ai.response.toolCalls",
    "ai.response.reasoning",
    "ai.toolCall.args",
    "ai.toolCall.result",
    "all_messages_events",
    "final_result",
    # event attributes of the GenAI / OpenLLMetry message events
    "content",
    "message",
    "body",
    "tool_calls",
)

# Normalized columns that hold prompts and responses.
CONTENT_COLUMNS = ("InputMessages", "OutputMessages", "SystemPrompt", "ToolCalls", "PromptTemplate", "PromptVariables")


def _is_glob(key: str) -> bool:
    return any(ch in key for ch in "*?[")


class KeyPolicies:
    """Resolves a key to a policy; answers are cached, keys repeat across spans."""

    def __init__(
        self,
        configured: Iterable[tuple[str, str]],
        defaults: bool = True,
        content_keys: Iterable[str] = (),
    ) -> None:
        configured = list(configured)
        self._exact = {key: policy for key, policy in configured if not _is_glob(key)}
        self._globs = [(key, policy) for key, policy in configured if _is_glob(key)]
        self._defaults = DEFAULT_KEY_POLICIES if defaults else ()
        self._content = tuple(CONTENT_KEYS) + tuple(content_keys)
        self._cache: dict[str, str] = {}
        self._content_cache: dict[str, bool] = {}

    def policy(self, key: str) -> str:
        found = self._cache.get(key)
        if found is None:
            found = self._resolve(key)
            if len(self._cache) < 100_000:
                self._cache[key] = found
        return found

    def is_content(self, key: str) -> bool:
        found = self._content_cache.get(key)
        if found is None:
            found = any(fnmatchcase(key, glob) for glob in self._content)
            if len(self._content_cache) < 100_000:
                self._content_cache[key] = found
        return found

    def _resolve(self, key: str) -> str:
        if key in self._exact:
            return self._exact[key]
        for glob, policy in self._globs:
            if fnmatchcase(key, glob):
                return policy
        lowered = key.lower()
        for glob, policy in self._defaults:
            if fnmatchcase(lowered, glob):
                return policy
        return SCAN

    def column_policy(self, column: str, explicit: dict[str, str]) -> str:
        """A column's own policy, else the first non-scanning policy of an attribute it is read from."""
        if column in explicit:
            return explicit[column]
        # A policy on an attribute a column is copied from also applies to the column: hashing `user.id`
        # must not leave the raw id in UserId, nor masking `service.name` the raw name in ServiceName.
        for key in COPIED_FROM.get(column, ()):
            policy = self.policy(key)
            if policy not in (SCAN, KEEP):
                return policy
        return SCAN
