-- traces with what people and evaluators said about them (scores, POST /v1/scores); a separate view so
-- that traces costs no join (see llm_calls_scored.sql).
-- user_feedback is the latest `user` score of the trace (of the trace as a whole or of any of its spans),
-- NULL when there is none; scores the latest value of each score name, every source. A score joins only
-- the trace of its own tenant, and joins once the trace's spans land (the subquery repeats the trace part
-- of llm_calls_scored, keep them in step). It joins on the trace's TraceKey (schema/0026), computed here from
-- the trace's tenant_id and trace_id: one digest per trace, and the scores grouped by one fixed-size key.
CREATE OR REPLACE VIEW traces_scored AS
SELECT
    trace.*,
    score.user_feedback AS user_feedback,
    score.scores AS scores
FROM traces AS trace
LEFT ANY JOIN (
    SELECT
        TraceKey AS score_trace_key,
        argMaxIf(toNullable(Value), (Timestamp, ScoreId), Source = 'user') AS user_feedback,
        mapApply((name, latest) -> (name, latest.3), maxMap(map(CAST(Name, 'String'), (Timestamp, ScoreId, Value)))) AS scores
    FROM scores
    GROUP BY TraceKey
) AS score ON reinterpretAsUUID(sipHash128(trace.tenant_id, trace.trace_id)) = score.score_trace_key;
