-- llm_calls with what people and evaluators said about each call (scores, POST /v1/scores).
-- A separate view, so that llm_calls itself costs no join: on 1M calls and 100k scores the join makes a
-- plain count() ~20x slower (bench/bench_scores_views.py); read this view when you need the scores.
-- user_feedback is the latest `user` score of the call (sent with its span_id), else the latest `user`
-- score of its trace (of the trace as a whole or of any of its spans); NULL when there is none.
-- scores holds the latest value of each score name (every source): the call's own, else the latest of the
-- scores about its whole trace (sent without span_id); scores of other spans (a sibling call) stay theirs.
-- A score joins only spans of its own tenant; a score stored before its span joins once the span lands.
-- One join per call on trace_key (the digest of tenant and trace id, schema/0026: one number to hash per call
-- instead of two strings): the subquery holds, per trace, its latest user score and its
-- whole-trace scores, and per span of it the span's own (traces_scored computes user_feedback the same way,
-- keep them in step).
-- review_state is the call's latest review (reviews, POST /v1/reviews or `tracehouse review set`): approved,
-- flagged, rejected, or pending (never reviewed, or reopened); reviewed_by, review_reason and reviewed_at are
-- that review's (reviewed_at NULL when never reviewed). The latest is by Timestamp, then ReviewId.
-- prompt_version_number is the registry's number of the call's prompt version (prompt_versions: "answer v7",
-- numbered per name over all tenants), NULL when the call has no prompt or the registry lacks it. A call with a
-- template and no version is the version prompt_observations_mv registered for it (the template's hash; only
-- such calls pay for hashing: short-circuit evaluation skips it for the others).
CREATE OR REPLACE VIEW llm_calls_scored AS
SELECT
    call.*,
    if(mapContains(score.user_feedback_by_span, call.id), score.user_feedback_by_span[call.id], score.user_feedback) AS user_feedback,
    mapUpdate(score.whole_trace_scores, score.scores_by_span[call.id]) AS scores,
    if(review.latest_state = '', 'pending', review.latest_state) AS review_state,
    review.latest_reviewer AS reviewed_by,
    review.latest_reason AS review_reason,
    if(review.latest_state = '', NULL, review.latest_at) AS reviewed_at,
    prompt.version_number AS prompt_version_number
FROM llm_calls AS call
LEFT ANY JOIN (
    SELECT
        TraceKey AS score_trace_key,
        argMaxIf(span_user_feedback, span_user_at, span_user_feedback IS NOT NULL) AS user_feedback,
        mapApply((name, latest) -> (name, latest.3), anyIf(span_latest, SpanId = '')) AS whole_trace_scores,
        mapFromArrays(
            groupArrayIf(SpanId, SpanId != '' AND span_user_feedback IS NOT NULL),
            groupArrayIf(assumeNotNull(span_user_feedback), SpanId != '' AND span_user_feedback IS NOT NULL)
        ) AS user_feedback_by_span,
        mapFromArrays(
            groupArrayIf(SpanId, SpanId != ''),
            groupArrayIf(mapApply((name, latest) -> (name, latest.3), span_latest), SpanId != '')
        ) AS scores_by_span
    FROM (
        SELECT
            TraceKey,
            SpanId,
            argMaxIf(toNullable(Value), (Timestamp, ScoreId), Source = 'user') AS span_user_feedback,
            maxIf((Timestamp, ScoreId), Source = 'user') AS span_user_at,
            maxMap(map(CAST(Name, 'String'), (Timestamp, ScoreId, Value))) AS span_latest
        FROM scores
        GROUP BY TraceKey, SpanId
    )
    GROUP BY TraceKey
) AS score ON call.trace_key = score.score_trace_key
LEFT ANY JOIN (
    SELECT
        TraceKey AS review_trace_key,
        SpanId AS review_span_id,
        argMax(State, (Timestamp, ReviewId)) AS latest_state,
        argMax(Reviewer, (Timestamp, ReviewId)) AS latest_reviewer,
        argMax(Reason, (Timestamp, ReviewId)) AS latest_reason,
        max(Timestamp) AS latest_at
    FROM reviews
    GROUP BY TraceKey, SpanId
) AS review
    ON call.trace_key = review.review_trace_key AND call.id = review.review_span_id
LEFT ANY JOIN (
    SELECT name AS prompt_join_name, version AS prompt_join_version, toNullable(version_number) AS version_number
    FROM prompt_versions
) AS prompt
    ON call.prompt_name = prompt.prompt_join_name
    AND if(
        call.prompt_version != '' OR call.prompt_template = '',
        call.prompt_version,
        lower(substring(hex(SHA256(call.prompt_template)), 1, 12))
    ) = prompt.prompt_join_version;
