-- Registers, on its own, every prompt template version seen on incoming spans (the `observed` source of the
-- registry): from each insert into otel_traces, one row per (tenant, prompt name, version) of the spans that
-- carry a prompt name and a version or a template, into prompt_observations (schema/0017_prompts.sql).
-- Version: the span's llm.prompt_template.version (the app sends its file's content hash), else the first 12
-- hex digits of the SHA-256 of the template. Template: the span's, made valid UTF-8 (invalid bytes become
-- U+FFFD) and, past 65536 characters, cut there with the marker ' …[truncated]': registered, never dropped.
-- A span whose content was sampled away carries no template; its version is registered all the same.
CREATE MATERIALIZED VIEW IF NOT EXISTS prompt_observations_mv
TO prompt_observations
AS SELECT
    TenantId,
    PromptTemplateName AS Name,
    if(PromptVersion != '', PromptVersion, lower(substring(hex(SHA256(PromptTemplate)), 1, 12))) AS Version,
    max(
        if(
            lengthUTF8(toValidUTF8(PromptTemplate)) > 65536,
            concat(substringUTF8(toValidUTF8(PromptTemplate), 1, 65536), ' …[truncated]'),
            toValidUTF8(PromptTemplate)
        )
    ) AS Template,
    min(Timestamp) AS FirstSeen,
    max(Timestamp) AS LastSeen,
    toUInt64(count()) AS Calls
FROM otel_traces
WHERE PromptTemplateName != '' AND (PromptVersion != '' OR PromptTemplate != '')
GROUP BY TenantId, Name, Version;
