"""The Grafana macro expansion tests use: the package's own (tracehouse.collector.grafana_macros), which
`tracehouse report` runs too, so the dashboards' SQL is expanded one way everywhere."""

from tracehouse.collector.grafana_macros import (  # noqa: F401 - re-exported for the tests
    ALL,
    ARITY,
    VARIABLE,
    ExpansionError,
    QueryContext,
    Variable,
    apply_conditional_all,
    expand,
    expand_macros,
    interpolate_variables,
    macro_args,
    portability_problems,
)
