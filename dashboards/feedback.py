"""Feedback and review (feedback.json): what end users said about the calls (the `user` scores of POST
/v1/scores), by feature, model and prompt version, the worst-rated calls, and the reviewers' side: the review
queue by reason, the flagged rate, the calls by review state and the latest flags and rejections.

The panels read `llm_calls_scored` (llm_calls joined with the scores and reviews tables) over the time range
of the calls, never a rollup; the feedback rates read llm_calls with HAS_USER_SCORE instead, without the view's
joins. The join costs more than llm_calls alone (schema/views/llm_calls_scored.sql).
"""

from __future__ import annotations

from typing import Any

from .panels import LLM_VARIABLES, Layout, barchart, dashboard, piechart, stat, table, timeseries, trace_links
from .queries import CALLS_IN_RANGE, FEATURE_NAME, calls_per_interval, indent, sql

UID = "tracehouse-feedback"
SCORED = "llm_calls_scored"
# The calls of the range that a user rated (their latest `user` score, else their trace's).
RATED_CALLS = f"{CALLS_IN_RANGE}\n  AND user_feedback IS NOT NULL"
# The same test on llm_calls without the view's joins: a call has user feedback exactly when a `user` score of
# its tenant and trace exists (of the call, of another span of the trace, or of the whole trace), i.e. of its
# trace_key (the digest of both, schema/0026). The panels that only count rated calls use it: 10M spans, 7 days,
# 180k scores: ~1.4 s through the view, 214 ms on (tenant_id, trace_id), 87-104 ms on trace_key (bench/bench_panels.py).
HAS_USER_SCORE = "trace_key IN (SELECT TraceKey FROM scores WHERE Source = 'user')"
# The calls of the range made from a prompt template, all and rated (calls of no template have no version).
PROMPT_CALLS = f"{CALLS_IN_RANGE}\n  AND prompt_name != ''"
PROMPT_RATED_CALLS = f"{RATED_CALLS}\n  AND prompt_name != ''"
# The calls of the range that a reviewer approved, flagged or rejected (and did not reopen).
REVIEWED_CALLS = f"{CALLS_IN_RANGE}\n  AND review_state != 'pending'"
PROVIDER_MODEL = "concat(provider, ' / ', model) AS provider_model"
# A prompt template and version as one series name (as the Prompts dashboard names them).
PROMPT_LABEL = "concat(prompt_name, ' ', if(prompt_version = '', '(no version)', prompt_version)) AS prompt"

# The review queue's rules, as `tracehouse review list --queue` applies them (collector/review_cli.py:
# queue_sql, DEFAULT_LOW_SCORE, COST_OUTLIER_FACTOR; tests/test_dashboards.py checks they agree). In
# priority order: a pending call is counted under the first rule it meets.
LOW_SCORE = 0.5  # user feedback at or below this is low (a thumbs down is 0)
COST_OUTLIER_FACTOR = 3.0  # cost at least this times the median cost of the model's pending calls
QUEUE_REASONS = ("error", "refusal", "low score", "cost outlier")
NO_RULE = "no rule (random share)"  # the pending calls the queue samples from
QUEUED = tuple("queued_" + reason.replace(" ", "_") for reason in QUEUE_REASONS)  # a column per rule, in order


def _queue_by_model() -> str:
    """Per model, the pending calls of the range and how many the queue's rules pick, rule by rule. One pass
    over the view grouped by model, no window: the model's median cost is an aggregate of its group and the
    costs of the calls no earlier rule picks are compared with it afterwards (`review list --queue` takes the
    median with a window over the same calls; both take the exact median, as `median` samples past 8,192 values
    and the two forms then disagree). 10M spans, 7 days, 1.9M pending calls: the window took ~20% longer; the
    rest is the view's joins of every pending call (bench/bench_panels.py)."""
    earlier_rules = (
        f"multiIf(status = 'Error' OR error != '', 1, finish_reason = 'content_filter', 2,\n"
        f"      user_feedback IS NOT NULL AND user_feedback <= {LOW_SCORE!r}, 3, 0)"
    )
    # rule n is QUEUE_REASONS[n - 1]; 0: none of the three, so a cost outlier if its cost says so
    counted = ",\n          ".join(f"countIf(rule = {n}) AS {name}" for n, name in enumerate(QUEUED[:3], 1))
    return sql(
        f"""
        SELECT model,
          count() AS pending,
          {counted},
          arrayCount(cost -> cost > 0 AND cost >= {COST_OUTLIER_FACTOR!r} * medianExact(toFloat64(cost_usd)),
            groupArrayIf(cost_usd, rule = 0)) AS {QUEUED[3]}
        FROM (
          SELECT model, cost_usd,
            {earlier_rules} AS rule
          FROM {SCORED}
          WHERE review_state = 'pending' AND {CALLS_IN_RANGE}
        )
        GROUP BY model
        """
    )


def _queue_by_reason() -> str:
    """One row per rule (zero included, so an empty rule shows as such), then the calls no rule picks."""
    totals = [f"total_{name}" for name in QUEUED]
    sums = ",\n    ".join(f"sum({name}) AS {total}" for name, total in zip(QUEUED, totals, strict=True))
    reasons = ", ".join(f"'{reason}'" for reason in (*QUEUE_REASONS, NO_RULE))
    return (
        "-- the rules of `tracehouse review list --queue` (collector/review_cli.py queue_sql), in its order\n"
        "SELECT reason, pending\n"
        "FROM (\n"
        f"  SELECT {sums},\n"
        f"    toUInt64(sum(pending) - ({' + '.join(totals)})) AS unpicked\n"
        "  FROM (\n"
        f"{indent(_queue_by_model(), 4)}\n"
        "  )\n"
        ")\n"
        f"ARRAY JOIN [{reasons}] AS reason, [{', '.join((*totals, 'unpicked'))}] AS pending"
    )


def _scored_per_interval(columns: str, group_by: str, condition: str) -> str:
    return sql(
        f"""
        SELECT $__timeInterval(ts) AS time, {columns}
        FROM {SCORED}
        WHERE {condition}
        GROUP BY {group_by}
        ORDER BY time
        """
    )


def _feedback_by(title: str, description: str, labels: str, group_by: str, condition: str) -> dict[str, Any]:
    """A table of the feedback per `group_by`: calls, rated calls, the feedback rate, the mean and low scores."""
    return table(
        title,
        description,
        f"""
        SELECT {labels},
          count() AS calls,
          countIf(user_feedback IS NOT NULL) AS rated,
          rated / calls AS feedback_rate,
          avg(user_feedback) AS mean_user_score,
          countIf(user_feedback <= {LOW_SCORE!r}) AS low_scores
        FROM {SCORED}
        WHERE {condition}
        GROUP BY {group_by}
        ORDER BY mean_user_score NULLS LAST, calls DESC
        """,
        units={"feedback_rate": "percentunit"},
    )


def _mean_score_by(
    title: str, description: str, label: str, series: str, condition: str = RATED_CALLS
) -> dict[str, Any]:
    """The mean user score per interval, one series per `series` (a column `label` computes)."""
    query = _scored_per_interval(f"{label},\n  avg(user_feedback) AS mean_user_score", f"time, {series}", condition)
    return timeseries(title, description, query, "none", series_label=series)


def feedback() -> dict[str, Any]:
    g = Layout()
    g.row("Now")
    g.add(
        stat(
            "Feedback rate",
            "Share of the calls with user feedback (a `user` score of the call or of its trace)",
            f"SELECT countIf({HAS_USER_SCORE}) / greatest(count(), 1) AS feedback_rate\n"
            f"FROM llm_calls\nWHERE {CALLS_IN_RANGE}",
            "percentunit",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Mean user score",
            "Mean of the latest user score of the rated calls (a thumbs up is 1, a thumbs down 0)",
            f"SELECT avg(user_feedback) AS mean_user_score\nFROM {SCORED}\nWHERE {RATED_CALLS}",
            "none",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Review queue",
            "Pending calls that a rule of the review queue picks: errors, refusals, low scores, cost outliers",
            f"SELECT {' + '.join(f'sum({name})' for name in QUEUED)} AS queued\n"
            f"FROM (\n{indent(_queue_by_model(), 2)}\n)",
            "short",
        ),
        6,
        4,
    )
    g.add(
        stat(
            "Flagged rate",
            "Share of the reviewed calls (approved, flagged or rejected) whose review state is flagged",
            f"SELECT countIf(review_state = 'flagged') / greatest(count(), 1) AS flagged_rate\n"
            f"FROM {SCORED}\nWHERE {REVIEWED_CALLS}",
            "percentunit",
        ),
        6,
        4,
    )
    g.row("User feedback")
    g.add(
        timeseries(
            "Feedback rate over time",
            "Share of the calls per interval with user feedback",
            calls_per_interval(f"countIf({HAS_USER_SCORE}) / count() AS feedback_rate"),
            "percentunit",
        ),
        12,
        8,
    )
    g.add(
        timeseries(
            "Mean user score over time",
            "Mean user score of the rated calls per interval",
            _scored_per_interval("avg(user_feedback) AS mean_user_score", "time", RATED_CALLS),
            "none",
        ),
        12,
        8,
    )
    g.add(
        _mean_score_by(
            "Mean user score by feature",
            "Mean user score of the rated calls per interval, by feature",
            FEATURE_NAME,
            "feature_name",
        ),
        8,
        8,
    )
    g.add(
        _mean_score_by(
            "Mean user score by model",
            "Mean user score of the rated calls per interval, by provider and model",
            PROVIDER_MODEL,
            "provider_model",
        ),
        8,
        8,
    )
    g.add(
        _mean_score_by(
            "Mean user score by prompt version",
            "Mean user score of the rated calls of a prompt template per interval, by template and version",
            PROMPT_LABEL,
            "prompt",
            PROMPT_RATED_CALLS,
        ),
        8,
        8,
    )
    g.add(
        _feedback_by(
            "Feedback by feature",
            "Calls, rated calls, feedback rate, mean user score and low scores (at or below 0.5), by feature",
            FEATURE_NAME,
            "feature_name",
            CALLS_IN_RANGE,
        ),
        8,
        8,
    )
    g.add(
        _feedback_by(
            "Feedback by model",
            "Calls, rated calls, feedback rate, mean user score and low scores, by provider and model",
            "provider, model",
            "provider, model",
            CALLS_IN_RANGE,
        ),
        8,
        8,
    )
    g.add(
        _feedback_by(
            "Feedback by prompt version",
            "Calls, rated calls, feedback rate, mean user score and low scores, by prompt template and version",
            "prompt_name, prompt_version",
            "prompt_name, prompt_version",
            PROMPT_CALLS,
        ),
        8,
        8,
    )
    g.row("Worst-rated calls (click a trace id)")
    g.add(
        table(
            "Worst-rated calls",
            "The 20 rated calls with the lowest user score, newest first among equals; the trace id links to "
            "the trace detail and to the trace view",
            f"""
            SELECT ts, trace_id, id AS span_id, service, feature, model, prompt_name, prompt_version, user_id,
              user_feedback, scores, review_state, finish_reason, error
            FROM {SCORED}
            WHERE {RATED_CALLS}
            ORDER BY user_feedback, ts DESC
            LIMIT 20
            """,
            links={"trace_id": trace_links()},
            json_columns=("scores",),
        ),
        24,
        9,
    )
    g.row("Review")
    g.add(
        barchart(
            "Review queue by reason",
            "Pending calls by the first rule of `tracehouse review list --queue` they meet (error, refusal, "
            f"user score at or below {LOW_SCORE}, cost at least {COST_OUTLIER_FACTOR:g}x the median of the "
            "model's pending calls), and the pending calls no rule picks (the queue's random share comes from them)",
            _queue_by_reason(),
        ),
        8,
        8,
    )
    g.add(
        timeseries(
            "Flagged rate over time",
            "Of the reviewed calls per interval (by call time), the share flagged and the share rejected",
            _scored_per_interval(
                "countIf(review_state = 'flagged') / count() AS flagged_rate,\n"
                "  countIf(review_state = 'rejected') / count() AS rejected_rate",
                "time",
                REVIEWED_CALLS,
            ),
            "percentunit",
        ),
        8,
        8,
    )
    g.add(
        piechart(
            "Calls by review state",
            "Calls by their latest review: approved, flagged, rejected, or pending (never reviewed, or reopened)",
            f"""
            SELECT review_state, count() AS calls
            FROM {SCORED}
            WHERE {CALLS_IN_RANGE}
            GROUP BY review_state
            ORDER BY calls DESC
            """,
        ),
        8,
        8,
    )
    g.add(
        table(
            "Recently flagged or rejected calls",
            "The 50 latest flags and rejections, with reviewer and reason; the trace id links to the trace "
            "detail and to the trace view",
            f"""
            SELECT reviewed_at, review_state, reviewed_by, review_reason, ts, trace_id, id AS span_id,
              feature, model, user_feedback, finish_reason, error
            FROM {SCORED}
            WHERE {CALLS_IN_RANGE}
              AND review_state IN ('flagged', 'rejected')
            ORDER BY reviewed_at DESC
            LIMIT 50
            """,
            links={"trace_id": trace_links()},
        ),
        24,
        9,
    )
    return dashboard(
        UID,
        "tracehouse / Feedback and review",
        "What end users said about the calls, by feature, model and prompt version; the worst-rated calls; "
        "the review queue, the flagged rate and the latest flags.",
        g,
        LLM_VARIABLES,
    )
