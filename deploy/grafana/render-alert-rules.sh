#!/bin/sh
# Grafana expands environment variables in provisioning files, but not inside alert queries or
# thresholds. This writes the tracehouse alert rules with the daily budget from
# TRACEHOUSE_DAILY_BUDGET_USD (USD, default 100) into Grafana's alerting provisioning folder, then runs
# the command it was given (the compose file passes Grafana's /run.sh).
set -eu

template="${TRACEHOUSE_ALERT_RULES_TEMPLATE:-/etc/tracehouse/tracehouse-alerts.yaml}"
out_dir="${TRACEHOUSE_ALERT_RULES_DIR:-${GF_PATHS_PROVISIONING:-/etc/grafana/provisioning}/alerting}"
budget="${TRACEHOUSE_DAILY_BUDGET_USD:-100}"

case "$budget" in
  '' | .* | *. | *[!0-9.]* | *.*.*)
    echo "render-alert-rules: TRACEHOUSE_DAILY_BUDGET_USD must be a number of USD, got '$budget'" >&2
    exit 64
    ;;
esac

mkdir -p "$out_dir"
out="$out_dir/tracehouse-alerts.yaml"
sed "s/^\( *params: \[\)[0-9.]*\(\] *# tracehouse:daily-budget-usd\)\$/\1$budget\2/" "$template" >"$out"
if ! grep -q "params: \[$budget\] *# tracehouse:daily-budget-usd\$" "$out"; then
  echo "render-alert-rules: no line marked tracehouse:daily-budget-usd in $template" >&2
  exit 65
fi
echo "render-alert-rules: daily budget $budget USD -> $out"

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
