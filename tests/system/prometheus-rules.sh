#!/usr/bin/env bash
# The shipped Prometheus alert rules and Grafana dashboard
# (integrations/prometheus/, installed under /usr/share/vhostfix/prometheus/),
# with Debian's promtool:
#   1. `promtool check rules alerts.yml`;
#   2. `promtool test rules alerts_test.yml`, and every rule has a case where
#      it fires and one where it stays silent;
#   3. the tests can fail: each rule in turn made never to fire, and the stale
#      threshold moved, make `promtool test rules` fail;
#   4. the dashboard is valid JSON of the shape Grafana imports, and every
#      query in it is valid PromQL naming only series vhostfix or
#      node_exporter export (tests/system/audit-timer.sh runs the rules and
#      the queries against a real Prometheus).
# Root (the proxy's counters are root's); needs promtool (Debian package prometheus,
# .ci/run) and python3 with yaml.
T_NAME=prometheus-rules.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
command -v promtool >/dev/null || { t_fail "promtool is installed (Debian package prometheus, .ci/run)"; t_done; exit 1; }
PY=/usr/bin/python3
$PY -c 'import yaml' 2>/dev/null || { t_fail "python3-yaml is installed (.ci/run)"; t_done; exit 1; }

SRC=$REPO/integrations/prometheus
D=$T_TMP
cp "$SRC/alerts.yml" "$SRC/alerts_test.yml" "$D/"

# --- 1, 2 -----------------------------------------------------------------------------
out=$(promtool check rules "$D/alerts.yml" 2>&1)
t_eq "promtool check rules alerts.yml" 0 "$?"
nrules=$(grep -c '^      - alert: ' "$SRC/alerts.yml")
t_contains "... finds every rule" "$out" "SUCCESS: $nrules rules found"
out=$(cd "$D" && promtool test rules alerts_test.yml 2>&1)
t_eq "promtool test rules alerts_test.yml" 0 "$?"
grep -qx '  SUCCESS' <<<"$out" || t_log "promtool said: $out"
PROMTOOL_TEST=$out

coverage=$($PY - "$D/alerts.yml" "$D/alerts_test.yml" <<'PY'
import sys, yaml
rules = [r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]
fires, silent = set(), set()
for t in yaml.safe_load(open(sys.argv[2]))["tests"]:
    for c in t.get("alert_rule_test", []):
        (fires if c.get("exp_alerts") else silent).add(c["alertname"])
for r in rules:
    print(r, "fires" if r in fires else "NEVER-FIRES", "silent" if r in silent else "NEVER-SILENT")
PY
)
t_eq "every rule has a firing and a silent case in alerts_test.yml" "" "$(grep NEVER <<<"$coverage")"
t_eq "... for all $nrules rules" "$nrules" "$(grep -c ' fires silent$' <<<"$coverage")"

# --- 3. the tests can fail ---------------------------------------------------------------
# mutate NAME EXPR: alerts.yml with NAME's expression replaced by EXPR.
mutate() {
  $PY - "$SRC/alerts.yml" "$1" "$2" >"$D/alerts.yml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for g in doc["groups"]:
    for r in g["rules"]:
        if r["alert"] == sys.argv[2]:
            r["expr"] = sys.argv[3]
print(yaml.safe_dump(doc, sort_keys=False))
PY
}
caught=0
while read -r name _; do
  mutate "$name" 'vector(1) > 2'
  if (cd "$D" && promtool test rules alerts_test.yml >"$D/mut.out" 2>&1); then
    t_fail "alerts_test.yml catches $name never firing" "$(tail -n 5 "$D/mut.out")"
  else
    grep -q "alertname: $name," "$D/mut.out" && caught=$((caught + 1))
  fi
done <<<"$coverage"
t_eq "each of the $nrules rules made never to fire fails its own test" "$nrules" "$caught"
sed 's/> 45 \* 60/> 60 * 60/' "$SRC/alerts.yml" >"$D/alerts.yml"
(cd "$D" && promtool test rules alerts_test.yml >"$D/mut.out" 2>&1)
t_eq "a stale threshold moved from 45 to 60 minutes fails the test" "1 yes" \
  "$? $(grep -q 'alertname: VhostfixAuditStale, time: 50m' "$D/mut.out" && echo yes)"
cp "$SRC/alerts.yml" "$D/alerts.yml"

# --- 4. the dashboard ----------------------------------------------------------------------
DASH=$SRC/grafana-dashboard.json
exprs=$($PY - "$DASH" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
problems = []
for key in ("title", "uid", "panels", "templating", "schemaVersion"):
    if key not in d:
        problems.append("no " + key)
ids = [p.get("id") for p in d.get("panels", [])]
if len(ids) != len(set(ids)):
    problems.append("panel ids repeat")
variables = {v["name"] for v in d["templating"]["list"]}
for p in d["panels"]:
    for key in ("type", "title", "gridPos", "targets", "datasource"):
        if key not in p:
            problems.append("panel %s: no %s" % (p.get("id"), key))
    g = p.get("gridPos", {})
    if g.get("x", 0) + g.get("w", 0) > 24:
        problems.append("panel %s wider than the grid" % p["id"])
    for t in p.get("targets", []):
        if t.get("datasource", {}).get("uid") != "${datasource}":
            problems.append("panel %s: a query without the datasource variable" % p["id"])
        # Grafana's variables, as a Prometheus query would see them.
        print(t["expr"].replace("$instance", ".*"))
for v in d["templating"]["list"]:
    if v["type"] == "query":
        print("count(" + v["query"]["query"].replace("label_values(", "").split(",")[0] + ")")
for p in problems:
    print("PROBLEM " + p)
PY
)
t_eq "the dashboard parses and has Grafana's shape (title, uid, panels with grid, queries on \${datasource})" "" \
  "$(grep '^PROBLEM' <<<"$exprs")"
exprs=$(grep -v '^PROBLEM' <<<"$exprs")
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  i=0
  while IFS= read -r e; do
    i=$((i + 1))
    printf '      - record: dashboard_query_%d\n        expr: %s\n' "$i" "$($PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$e")"
  done <<<"$exprs"
} >"$D/dashboard-rules.yml"
out=$(promtool check rules "$D/dashboard-rules.yml" 2>&1)
t_eq "every dashboard query is valid PromQL (promtool)" 0 "$?"
[ "$?" = 0 ] || t_log "$out"
t_contains "... all $(wc -l <<<"$exprs") of them" "$out" "SUCCESS: $(wc -l <<<"$exprs") rules found"
# The series vhostfix exports: the audit's (the metric names `vhostfix audit
# --prometheus` writes, string literals wherever in src/ they are) and the counters a running
# proxy gives (vhostfix proxy --stats --format prometheus, asked of the built
# binary).
printf '[proxy]\nadmin_socket = "%s"\n' "$D/admin-sock" >"$D/proxy.toml"
"$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$D/sock" --upstream "$D/no-libvirt" >"$D/proxy.log" 2>&1 &
PROXY_PID=$!
on_exit "stop_pid $PROXY_PID"
wait_for "[ -S '$D/admin-sock' ]" 10 || t_fail "a proxy runs to list its counters" "$(cat "$D/proxy.log")"
stats=$("$VHOSTFIX" --config "$D/proxy.toml" proxy --stats --format prometheus 2>&1)
stop_pid "$PROXY_PID"
known=$( (grep -rhoE '"vhostfix_[a-z_]+"' "$REPO/src" | tr -d '"'; grep -o '^# TYPE vhostfix_[a-z_]*' <<<"$stats" | cut -d' ' -f3) | sort -u)
t_eq "the audit's five series are found in src/" 5 "$(grep -c '^vhostfix_audit_' <<<"$known")"
t_contains "the proxy lists its counters" "$stats" "vhostfix_proxy_calls_rewritten_total"
unknown=$(grep -o 'vhostfix_[a-z_]*' <<<"$exprs" | sort -u | while read -r m; do grep -qw "$m" <<<"$known" || echo "$m"; done)
t_eq "the dashboard names only series vhostfix exports (audit.rs, the proxy's counters)" "" "$unknown"
rule_exprs=$($PY -c 'import sys, yaml; [print(r["expr"]) for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]' "$SRC/alerts.yml")
unknown=$(grep -o 'vhostfix_[a-z_]*' <<<"$rule_exprs" | sort -u | while read -r m; do grep -qw "$m" <<<"$known" || echo "$m"; done)
# vhostfix_proxy_transparent is the failure policy's gauge, which the rules
# may name before this build writes it.
t_eq "so do the alert rules (the failure policy's gauge aside)" "" "$(grep -vx vhostfix_proxy_transparent <<<"$unknown")"
grep -qx vhostfix_proxy_transparent <<<"$known" || t_log "this build does not write vhostfix_proxy_transparent yet: its two rules stay silent"

# The README shows the test run.
t_log "promtool test rules: $(tr '\n' ' ' <<<"$PROMTOOL_TEST")"
t_done
