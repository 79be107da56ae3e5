"""The span attributes and metadata keys tracehouse defines: the app side writes them (`tagged`,
`ContextSpanProcessor`, or an app by hand), the collector's normalize stage reads them.

This module imports nothing, so the collector reads the names here without loading the app side's
OpenTelemetry SDK (tracehouse.instrumentation loads its modules on first use).
"""

USER = "tracehouse.user"
SESSION = "tracehouse.session"
TENANT = "tracehouse.tenant"  # what the app claims; a collector with API keys stores the key's tenant
FEATURE = "tracehouse.feature"
# On the span `tracehouse replay` writes: the span id of the call it replayed (llm_calls.replay_of).
REPLAY_OF = "tracehouse.replay_of"
# OpenInference has no attribute for a prompt template's name: ours sits beside its llm.prompt_template.*.
PROMPT_TEMPLATE_NAME = "llm.prompt_template.name"

# Feature and tenant have no OpenInference attribute either: `tagged` also puts them in the span's
# metadata object (OpenInference `metadata`, OpenLLMetry `traceloop.association.properties.*`) under these keys.
METADATA_FEATURE = "feature"
METADATA_TENANT = "tenant_id"

# Provider batch jobs (tracehouse.instrumentation.batch). A batch's submission span, each request's LLM span and
# its handler span carry the batch id and the operation; the collector prices a span with a batch id at the
# provider's batch rates and groups llm_calls by it.
BATCH_ID = "tracehouse.batch.id"
BATCH_OPERATION = "tracehouse.batch.operation"  # one of the BATCH_OPERATIONS below
BATCH_OPERATION_SUBMIT = "submit"  # the submission span: one per batch
BATCH_OPERATION_REQUEST = "request"  # one LLM span per request of the batch
BATCH_OPERATION_HANDLE = "handle"  # the app handler's span, child of the request's span
BATCH_PROVIDER = "tracehouse.batch.provider"  # openai | anthropic, on the submission span
BATCH_PURPOSE = "tracehouse.batch.purpose"  # what the app said the batch is for, on every batch span
BATCH_REQUEST_COUNT = "tracehouse.batch.request_count"  # on the submission span
BATCH_MODELS = "tracehouse.batch.models"  # string array, on the submission span
BATCH_CUSTOM_ID = "tracehouse.batch.custom_id"  # on request and handler spans, and on the submission's links
BATCH_SUBMITTED_AT = "tracehouse.batch.submitted_at"  # Unix seconds (float) the batch was submitted
# The provider's verdict for one request: succeeded | errored | expired | canceled.
BATCH_REQUEST_STATE = "tracehouse.batch.request_state"
# The request's outcome once collected: handled (the handler returned) | handler_failed | provider_failed |
# expired | canceled. Only `handled` leaves the request's span with status OK.
BATCH_OUTCOME = "tracehouse.batch.outcome"
BATCH_OUTCOMES = ("handled", "handler_failed", "provider_failed", "expired", "canceled")
