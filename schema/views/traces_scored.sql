-- traces with what people and evaluators said about them (scores, POST /v1/scores); a separate view so
-- that traces costs no join (see llm_calls_scored.sql).
-- user_feedback is the latest `user` score of the trace (of the trace as a whole or of any of its spans),
-- NULL when there is none; scores the latest value of each score name, every source. A score joins only
-- the trace of its own tenant, and joins once the trace's spans land (the subquery repeats the trace part
-- of llm_calls_scored, keep them in step). It joins on (tenant, trace id), not on llm_calls_scored's trace_key:
-- traces has one row per trace id, with the trace's tenant, and no TraceKey column; the rows joined are the same.
CREATE OR REPLACE VIEW traces_scored AS
SELECT
    trace.*,
    score.user_feedback AS user_feedback,
    score.scores AS scores
FROM traces AS trace
LEFT ANY JOIN (
    SELECT
        TenantId AS score_tenant_id,
        TraceId AS score_trace_id,
        argMaxIf(toNullable(Value), (Timestamp, ScoreId), Source = 'user') AS user_feedback,
        mapApply((name, latest) -> (name, latest.3), maxMap(map(CAST(Name, 'String'), (Timestamp, ScoreId, Value)))) AS scores
    FROM scores
    GROUP BY TenantId, TraceId
) AS score ON trace.tenant_id = score.score_tenant_id AND trace.trace_id = score.score_trace_id;
