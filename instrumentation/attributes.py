"""The span attributes and metadata keys tracehouse defines: the app side writes them (`tagged`,
`ContextSpanProcessor`, or an app by hand), the collector's normalize stage reads them.

This module imports nothing, so the collector reads the names here without loading the app side's
OpenTelemetry SDK (tracehouse.instrumentation loads its modules on first use).
"""

USER = "tracehouse.user"
SESSION = "tracehouse.session"
TENANT = "tracehouse.tenant"  # what the app claims; a collector with API keys stores the key's tenant
FEATURE = "tracehouse.feature"
# OpenInference has no attribute for a prompt template's name: ours sits beside its llm.prompt_template.*.
PROMPT_TEMPLATE_NAME = "llm.prompt_template.name"

# Feature and tenant have no OpenInference attribute either: `tagged` also puts them in the span's
# metadata object (OpenInference `metadata`, OpenLLMetry `traceloop.association.properties.*`) under these keys.
METADATA_FEATURE = "feature"
METADATA_TENANT = "tenant_id"
