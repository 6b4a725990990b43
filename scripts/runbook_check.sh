#!/usr/bin/env bash
# Run every command of docs/RUNBOOK.md against the stack `make run` started, and check each one's exit
# status and the shape of its output. Starts nothing: it fails fast when there is no stack.
#
# Before the commands run it creates, on that development stack, the situations they look for:
#   1. one submission through the API with a known X-Request-ID; checks the id reaches the worker's lines;
#   2. an outage of platform `x` in the sandbox and submissions that open its breaker;
#   3. one reconcile task that fails (a bogus report id), so there is a worker exception to read.
# Placeholders (<request-id>, <report-id>, ...) are filled from these. On exit the sandbox fault is cleared
# and the breaker of `x` reset.
#
#   scripts/runbook_check.sh           run the check (exit 1 if any command fails)
#   scripts/runbook_check.sh --list    print the commands it would run, one per line (used by the tests)
set -uo pipefail
cd "$(dirname "$0")/.."

RUNBOOK=docs/RUNBOOK.md
BASE=${RUNBOOK_BASE_URL:-http://127.0.0.1:8000}
SANDBOX=${SANDBOX_URL:-http://127.0.0.1:8100}
KEYS=${VAR_DIR:-var}/demo_keys.json
LOG=${LOG_FILE:-${VAR_DIR:-var}/log/app.log}
PY=.venv/bin/python
BREAKER_PLATFORM=x
TIMEOUT=${RUNBOOK_COMMAND_TIMEOUT:-120}

# Every command of the runbook: the lines of its ```bash blocks, indentation and comments removed.
runbook_commands() {
  awk '
    /^[[:space:]]*```bash[[:space:]]*$/ { inside = 1; next }
    /^[[:space:]]*```/ { inside = 0; next }
    inside {
      sub(/^[[:space:]]+/, "")
      if ($0 == "" || $0 ~ /^#/) next
      print
    }
  ' "$RUNBOOK"
}

if [[ "${1:-}" == "--list" ]]; then
  runbook_commands
  exit 0
fi

die() { echo "runbook-check: $*" >&2; exit 2; }
for tool in curl jq awk timeout; do command -v "$tool" >/dev/null || die "$tool is required"; done
curl -fsS -o /dev/null "$BASE/health" || die "no stack answers at $BASE/health: start one with 'make run'"
[[ -f "$KEYS" ]] || die "$KEYS not found: 'make run' (seed_demo) writes it"
[[ -f "$LOG" ]] || die "$LOG not found: the stack must run with LOG_FILE (the development default)"

ALICE_KEY=$(jq -r '."alice@example.com"' "$KEYS")
STAFF_KEY=$(jq -r '.staff' "$KEYS")
WORK=$(mktemp -d)

cleanup() {
  curl -s -o /dev/null -X DELETE "$SANDBOX/_control/faults/$BREAKER_PLATFORM" || true
  $PY manage.py breaker_reset "$BREAKER_PLATFORM" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() {  # wait_for <seconds> <description> <command...>
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS >= deadline)) && { echo "runbook-check: timed out waiting for $what" >&2; return 1; }
    sleep 0.5
  done
}

random_digits() { tr -dc '0-9' </dev/urandom | head -c "$1"; }
random_id() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"; }

submit() {  # submit <platform> <post url> <request id>; prints the report id
  local body
  body=$(jq -n --argjson campaign "$CAMPAIGN_ID" --arg platform "$1" --arg url "$2" \
    '{campaign_id: $campaign, platform: $platform, post_url: $url,
      claimed_views: 1000, claimed_clicks: 40, claimed_conversions: 4}')
  curl -s -D "$WORK/headers" -o "$WORK/body" -H "Authorization: Bearer $ALICE_KEY" -H "X-Request-ID: $3" \
    -H 'Content-Type: application/json' -d "$body" "$BASE/api/v1/submissions/" || return 1
  grep -qi "^x-request-id: $3" "$WORK/headers" || { echo "X-Request-ID not echoed" >&2; return 1; }
  jq -e '.report_id' "$WORK/body" || { cat "$WORK/body" >&2; return 1; }
}

log_has() {  # log_has <jq condition>
  jq -e -s "map(select($1)) | length > 0" "$LOG"
}

echo "== setting up against $BASE"
CAMPAIGN_ID=$($PY manage.py shell --no-imports -c \
  "from reconciliation.models import Campaign; print(Campaign.objects.get(name='Spring Launch').pk)" 2>/dev/null) \
  || die "the demo campaign 'Spring Launch' is missing: run 'make seed'"

# 1. Request correlation, end to end.
REQUEST_ID="runbook-$(date +%s)-$(random_id 6)"
REPORT_ID=$(submit youtube "https://www.youtube.com/watch?v=$(random_id 11)" "$REQUEST_ID") \
  || die "the submission API did not accept a submission"
wait_for 60 "the worker's 'Reconciliation completed' line for $REQUEST_ID" \
  log_has ".request_id == \"$REQUEST_ID\" and .message == \"Reconciliation completed\"" || exit 1
processes=$(jq -s "map(select(.request_id == \"$REQUEST_ID\") | .process_id) | unique | length" "$LOG")
((processes >= 2)) || die "request $REQUEST_ID is in $processes process(es)' lines, expected web and worker"
echo "ok   request id $REQUEST_ID: submission (web) and reconciliation (worker) lines share it"

# 2. An open breaker: the sandbox answers 503 for x; each attempt makes 1 + 2 retried calls.
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' -d '{"outage": true}' \
  "$SANDBOX/_control/faults/$BREAKER_PLATFORM" || die "cannot reach the sandbox control API at $SANDBOX"
breaker_open() {
  $PY manage.py breaker_status --json 2>/dev/null | jq -e ".${BREAKER_PLATFORM}.state == \"OPEN\""
}
for _ in 1 2 3 4; do
  breaker_open >/dev/null && break
  submit "$BREAKER_PLATFORM" "https://x.com/runbook/status/1$(random_digits 17)" "runbook-outage-$(random_id 8)" \
    >/dev/null || die "the submission API did not accept a submission for $BREAKER_PLATFORM"
  wait_for 20 "the $BREAKER_PLATFORM breaker to open" breaker_open 2>/dev/null || true
done
breaker_open >/dev/null || die "the $BREAKER_PLATFORM breaker did not open"
echo "ok   breaker of $BREAKER_PLATFORM is OPEN"

# 3. A failing task.
.venv/bin/celery -A reconcile_project call reconciliation.tasks.reconcile_report \
  --args='["runbook-bogus-report"]' --queue reconcile >/dev/null 2>&1 || die "cannot publish a task"
wait_for 30 "'Reconciliation job failed' in $LOG" log_has '.message == "Reconciliation job failed"' || exit 1
echo "ok   a failing task was logged and recorded"

TODAY=$(date -u +%Y-%m-%d)

# Expected output of a command (by its text as written in the runbook); default: some output.
check_output() {
  local cmd=$1 out=$2
  case "$cmd" in
    *"> /tmp/incident-"*) true ;;  # writes a snapshot file, prints nothing
    *"tail -F"*) true ;;  # follows the file; killed after 3 s (a bad jq filter would fail at once)
    *"/health/detailed | jq .platforms"*)  # make run: every platform is the sandbox, and says so
      jq -e '.mode == "sandbox" and (.sandbox | length == 6)' "$out" ;;
    *"/health/detailed | jq '{status, failing, degraded}'"*)
      jq -e '(.status | IN("healthy", "degraded")) and (.failing == [])' "$out" ;;
    *"-w '%{http_code}"*"/health/detailed"*) grep -qx '200' "$out" ;;
    *"/health/detailed | jq ."*)
      jq -e '.checks.database == "healthy" and .checks.broker == "healthy" and .checks.workers.count >= 1
             and (.checks | has("queues") and has("breakers"))' "$out" ;;
    *"/health | jq ."*)
      jq -e '.status == "healthy" and .service == "affiliate-reconciliation-platform" and (.timestamp | type == "number")' "$out" ;;
    *"-D - -o /dev/null -H 'X-Request-ID: runbook-header-check'"*)
      grep -qi '^x-request-id: runbook-header-check' "$out" && grep -qi '^x-process-time: [0-9.]*' "$out" &&
        grep -qi '^x-content-type-options: nosniff' "$out" && grep -qi '^x-frame-options: DENY' "$out" &&
        grep -qi '^x-xss-protection: 1; mode=block' "$out" ;;
    *"grep -i '^x-process-time'"*) grep -qiE '^x-process-time: [0-9]+\.[0-9]{2}' "$out" ;;
    *"grep \"<request-id>\""* | *"select(.request_id == \"<request-id>\")"*)
      grep -q "Request completed" "$out" && grep -q "Reconciliation completed" "$out" ;;
    *"select(.report_id == <report-id>)"*) grep -q "Reconciliation completed" "$out" ;;
    *"grep \"Reconciliation job failed\""*) grep -q . "$out" ;;
    *"grep \"circuit_\""*) grep -q '"to_state":"OPEN"' "$out" ;;
    *"Performance: platform_fetch\" var/log/app.log | jq '.duration_ms'"*) grep -qE '^[0-9.]+$' "$out" ;;
    *"select(.level == \"ERROR\")"*) grep -q "Reconciliation job failed" "$out" ;;
    *"^(reconciliation_status_total|queue_depth|worker_idle_ratio|alert_created_total"*)
      for name in 'reconciliation_status_total{status=' 'queue_depth{queue="reconcile"}' 'worker_idle_ratio ' \
        'alert_created_total{' 'trust_score_bucket_total{bucket='; do
        grep -qF "$name" "$out" || { echo "missing $name" >&2; return 1; }
      done ;;
    *"'^breaker_state.* 1.0\$'"*) grep -qF "breaker_state{platform=\"$BREAKER_PLATFORM\",state=\"OPEN\"} 1.0" "$out" ;;
    *"^platform_fetch_duration_seconds_count"*)
      grep -q 'platform_fetch_duration_seconds_count{.*outcome=.*platform=' "$out" ||
        grep -q 'platform_fetch_duration_seconds_count{.*platform=.*outcome=' "$out" ;;
    *"ops:worker:*"*) grep -q '^ops:worker:' "$out" ;;
    *"manage.py breaker_status --json | jq"*) grep -qx "$BREAKER_PLATFORM" "$out" ;;
    *"manage.py breaker_status"*) grep -q "^$BREAKER_PLATFORM " "$out" ;;
    *"/debug/circuit-breakers"*) jq -e ".${BREAKER_PLATFORM}.state and (keys | length == 6)" "$out" ;;
    *"/debug/worker-exceptions | jq '.exceptions[:5]'"*) jq -e 'length >= 1 and (.[0] | has("report_id") and has("type") and has("message") and has("time"))' "$out" ;;
    *"/debug/worker-exceptions | jq -r"*) grep -q 'ValueError' "$out" ;;
    *"_control/health"*) jq -e '.ok == true' "$out" ;;
    *"5555/healthcheck"*) grep -qx 'OK' "$out" ;;
    *"queue_status --json | jq"*) jq -e '.queues.reconcile >= 0 and has("retries_due_next_hour") and has("oldest_pending")' "$out" ;;
    *"manage.py queue_status"*) grep -q 'Queue depth' "$out" && grep -q 'Retries due in the next hour' "$out" ;;
    *"inspect ping"*) grep -q 'pong' "$out" ;;
    *"^notification_deliveries_total"* | *'startswith("Notification ")'*) true ;;  # none unless an alert was raised
    *"notifications_status --json"*) grep -qE '^[0-9]+$' "$out" ;;
    *"notifications_status"*) grep -q 'Deliveries by destination' "$out" ;;
    *"redeliver_notifications --failed --dry-run"*) grep -q 'dry run: [0-9]* deliveries' "$out" ;;
    *"redeliver_notifications"*) grep -q '^redelivered [0-9]* deliveries' "$out" ;;
    *"_control/webhooks"*) grep -qE '^[0-9]+$' "$out" ;;
    *"active_queues -d notifier@"*) grep -q "'name': 'notifications'" "$out" ;;
    *"inspect active_queues"*) grep -q "'name': 'reconcile'" "$out" ;;
    *"inspect active"*) grep -q '@' "$out" ;;
    *"inspect stats"*) grep -q '"pool"' "$out" ;;
    *"inspect registered"*) grep -q 'reconciliation.tasks.reconcile_report' "$out" ;;
    *"pgrep -af"*) grep -q 'celery -A reconcile_project worker' "$out" ;;
    *"dispatch_due"*) grep -q '^dispatched [0-9]* report' "$out" ;;
    *"reconcile_report <report-id>"*) grep -qE '^status +[A-Z_]+' "$out" ;;
    *"simulate_rules"*"| jq"*) jq -e 'type == "object" and length > 0' "$out" ;;
    *"simulate_rules"*) grep -q 'Transition matrix' "$out" && grep -q 'nothing was written' "$out" ;;
    *"/api/v1/rules/simulate"*) jq -e '(.claims | type == "number") and (.matrix | type == "array")' "$out" ;;
    *"rereconcile"*"--dry-run"*) grep -q 'dry run: [0-9]* report' "$out" ;;
    *"rereconcile"*) grep -q 're-reconciling [0-9]* report' "$out" ;;
    *"breaker_reset"*) true ;;
    *"manage.py check"*) grep -q 'no issues' "$out" ;;
    *"diffsettings"*) grep -q '^TRUST_SCORING' "$out" && grep -q '^RECONCILIATION_SETTINGS' "$out" ;;
    *"manage.py shell"*"adapters OK"*) grep -qx 'adapters OK' "$out" ;;
    *"manage.py shell"*"AFFILIATE_OVERCLAIMED"*) true ;;  # no overclaim in a fresh demo: the query must just run
    *"pytest"*) grep -q 'passed' "$out" ;;
    *"adapter_unexpected_error"*) grep -qE '^[0-9]+$' "$out" ;;
    *"migrate --check"*) true ;;
    *"showmigrations"*) grep -q '\[X\]' "$out" ;;
    *"grep \"Sweeper\""* | *"Created overclaim alert"* | *"trust_delta != null"* | *"process_time_ms > 500"*) true ;;
    *"Health check failed"*) true ;;  # none on a healthy stack: the filter must just run
    *) [[ -s "$out" ]] ;;
  esac
}

echo "== running the commands of $RUNBOOK"
passed=0
failed=()
while IFS= read -r raw; do
  cmd=${raw//<request-id>/$REQUEST_ID}
  cmd=${cmd//<report-id>/$REPORT_ID}
  cmd=${cmd//<campaign-id>/$CAMPAIGN_ID}
  cmd=${cmd//<platform>/$BREAKER_PLATFORM}
  cmd=${cmd//<staff-key>/$STAFF_KEY}
  cmd=${cmd//<yyyy-mm-dd>/$TODAY}
  if [[ "$cmd" == *"<"*">"* && "$cmd" =~ \<[a-z-]+\> ]]; then
    failed+=("$raw  (unknown placeholder ${BASH_REMATCH[0]})")
    echo "FAIL $raw  (unknown placeholder)"
    continue
  fi
  out="$WORK/out"
  limit=$TIMEOUT
  [[ "$raw" == *"tail -F"* ]] && limit=3
  # Like an operator's shell: no pipefail (a grep that finds nothing ends a pipeline quietly).
  timeout "$limit" bash -c "$cmd" >"$out" 2>"$WORK/err" </dev/null
  status=$?
  if [[ "$raw" == *"tail -F"* && $status -eq 124 ]]; then status=0; fi
  if [[ $status -ne 0 ]]; then
    failed+=("$raw  (exit $status)")
    echo "FAIL $raw  (exit $status)"
    head -c 600 "$WORK/err" | sed 's/^/     /'
  elif ! check_output "$raw" "$out" >/dev/null 2>"$WORK/check"; then
    failed+=("$raw  (unexpected output)")
    echo "FAIL $raw  (unexpected output)"
    cat "$WORK/check" | sed 's/^/     /'
    head -c 600 "$out" | sed 's/^/     /'
  else
    passed=$((passed + 1))
    echo "ok   $raw"
  fi
done < <(runbook_commands)

echo
echo "== $passed passed, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "   $f"; done
((${#failed[@]} == 0))
