#!/bin/sh
# Grafana expands environment variables in provisioning files, but not inside alert queries or
# thresholds. This writes the tracehouse alert rules with the daily budget from
# TRACEHOUSE_DAILY_BUDGET_USD (USD, default 100) and the lowest acceptable mean user score of a day from
# TRACEHOUSE_MIN_USER_SCORE (default 0.5; a thumbs up is 1, a thumbs down 0) into Grafana's alerting
# provisioning folder, then runs the command it was given (the compose file passes Grafana's /run.sh).
set -eu

template="${TRACEHOUSE_ALERT_RULES_TEMPLATE:-/etc/tracehouse/tracehouse-alerts.yaml}"
out_dir="${TRACEHOUSE_ALERT_RULES_DIR:-${GF_PATHS_PROVISIONING:-/etc/grafana/provisioning}/alerting}"
budget="${TRACEHOUSE_DAILY_BUDGET_USD:-100}"
min_score="${TRACEHOUSE_MIN_USER_SCORE:-0.5}"

case "$budget" in
  '' | .* | *. | *[!0-9.]* | *.*.*)
    echo "render-alert-rules: TRACEHOUSE_DAILY_BUDGET_USD must be a number of USD, got '$budget'" >&2
    exit 64
    ;;
esac
case "$min_score" in
  '' | .* | *. | *[!0-9.]* | *.*.*)
    echo "render-alert-rules: TRACEHOUSE_MIN_USER_SCORE must be a number (the lowest acceptable mean user score of a day), got '$min_score'" >&2
    exit 64
    ;;
esac

mkdir -p "$out_dir"
out="$out_dir/tracehouse-alerts.yaml"
sed -e "s/^\( *params: \[\)[0-9.]*\(\] *# tracehouse:daily-budget-usd\)\$/\1$budget\2/" \
  -e "s/^\( *params: \[\)[0-9.]*\(\] *# tracehouse:min-user-score\)\$/\1$min_score\2/" "$template" >"$out"
if ! grep -q "params: \[$budget\] *# tracehouse:daily-budget-usd\$" "$out"; then
  echo "render-alert-rules: no line marked tracehouse:daily-budget-usd in $template" >&2
  exit 65
fi
if ! grep -q "params: \[$min_score\] *# tracehouse:min-user-score\$" "$out"; then
  echo "render-alert-rules: no line marked tracehouse:min-user-score in $template" >&2
  exit 65
fi
echo "render-alert-rules: daily budget $budget USD, minimum mean user score $min_score -> $out"

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
