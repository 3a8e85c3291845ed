#!/usr/bin/env bash
# vhostfix-audit.timer and vhostfix-audit.service as the .deb installs them,
# under a real systemd (the nspawn container of tests/lib/nspawn.sh) with
# Debian's own prometheus-node-exporter running there, and the shipped alert
# rules (/usr/share/vhostfix/prometheus/alerts.yml) loaded into Debian's
# Prometheus scraping it:
#   1. the package installs the units without enabling them; they are valid;
#   2. enabled, the timer fires on its own schedule (OnBootSec=2min, the
#      container's start) and node_exporter's /metrics then shows vhostfix's
#      series for a Windows guest that needs fixing (an e1000 vhost-user NIC
#      that libvirt loaded from disk), one that libvirt would refuse (memory
#      not shared) and one that is compliant, with the audit's success and
#      age; findings do not fail the unit, the journal says what was found;
#   3. twenty runs back to back while node_exporter is scraped: every scrape
#      has the whole file (written atomically), no scrape error;
#   4. the proxy's counters reach /metrics while it runs, and go away with it;
#   5. a textfile directory that does not exist, and libvirt down, fail the
#      unit with a clear message (and vhostfix_audit_success 0);
#   6. Prometheus with the shipped rules: the domain alerts fire for exactly
#      the two guests, the proxy's rewrite, failed-socket and failed-service
#      alerts and the audit-failure alert follow real events, nothing else
#      fires;
#   7. the host is untouched.
# The README's "Running it on a fleet" metrics example is this suite's output
# (VHOSTFIX_BLESS=1 rewrites it). About three minutes, two of them waiting for
# the timer. Root; holds the system test lock; needs systemd-container,
# prometheus-node-exporter, prometheus, curl and cargo-deb (.ci/run).
T_NAME=audit-timer.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
. "$(dirname "$0")/../lib/nspawn.sh"
ct_require
for tool in prometheus-node-exporter prometheus promtool curl; do
  command -v "$tool" >/dev/null || { t_fail "$tool is installed (.ci/run installs it)"; t_done; exit 1; }
done
[ -e /lib/systemd/system/prometheus-node-exporter.service ] || { t_fail "prometheus-node-exporter.service is installed"; t_done; exit 1; }

system_lock

P=vhostfix-t-timer
TEXTFILE=/var/lib/prometheus/node-exporter
METRICS=http://127.0.0.1:9100/metrics
PROM=http://127.0.0.1:9090
DEB=$(deb_current) || { t_fail "the .deb to install (cargo-deb: see .ci/run)"; t_done; exit 1; }

ct_prepare audit
# node_exporter is started as its package does (this machine's own
# Prometheus server stays off: ct_prepare masks it; the suite runs one with
# the shipped rules).
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sfn /lib/systemd/system/prometheus-node-exporter.service \
  "$ROOT/etc/systemd/system/multi-user.target.wants/prometheus-node-exporter.service"
rm -f "$ROOT$TEXTFILE"/vhostfix*.prom
# Only this suite's domains in the container's libvirt (whatever this machine
# has defined stays on the lower layer, untouched).
find "$ROOT/etc/libvirt/qemu" "$ROOT/etc/libvirt/qemu/autostart" -maxdepth 1 -name '*.xml' -delete 2>/dev/null
install -D -m 0644 "$DEB" "$ROOT/root/vhostfix.deb"

# dom NAME UUID-SUFFIX EXTRA-TOP MODEL: a small Windows TCG guest with one
# vhost-user NIC (server mode: no backend needed to define it).
dom() {
  cat <<XML
<domain type='qemu'>
  <name>$P-$1</name>
  <uuid>5c1e7a2d-90b3-4f6e-8d2a-00000000000$2</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  $3
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/><hyperv><relaxed state='on'/></hyperv></features>
  <clock offset='localtime'/>
  <devices>
    <interface type='vhostuser'>
      <mac address='52:54:00:7e:00:0$2'/>
      <source type='unix' path='/run/$P/$1.sock' mode='server'/>
      <model type='$4'/>
    </interface>
  </devices>
</domain>
XML
}
SHARED="<memoryBacking><access mode='shared'/></memoryBacking>"
# libvirt refuses an e1000 vhost-user NIC at define, but loads a definition
# from disk as it is (what an upgrade or a copied file leaves): written before
# the container's libvirtd starts.
dom win-e1000 1 "$SHARED" e1000 >"$ROOT/etc/libvirt/qemu/$P-win-e1000.xml"
dom win-ok 2 "$SHARED" virtio >"$ROOT/root/win-ok.xml"
dom win-unshared 3 "" virtio >"$ROOT/root/win-unshared.xml"
install -D -m 0644 "$REPO/examples/windows-vhostuser.xml" "$ROOT/root/seed.xml"

timer_host_state() {
  local f
  for f in /etc/libvirt/qemu /usr/bin/vhostfix /usr/lib/systemd/system/vhostfix-audit.timer "$TEXTFILE" /var/lib/dpkg/status; do
    printf '%s %s\n' "$f" "$(stat -c '%i %a %Y' "$f" 2>/dev/null || echo absent)"
  done
  printf 'listing %s\n' "$(ls -A "$TEXTFILE" 2>/dev/null | paste -sd' ')"
  # The host's own system daemon (another user's session libvirtd may come
  # and go meanwhile; it is not the host's).
  printf 'libvirtd %s\n' "$(p=$(cat /run/libvirtd.pid 2>/dev/null) && kill -0 "$p" 2>/dev/null && echo "$p")"
  printf 'node_exporter %s\n' "$(pgrep -f prometheus-node-exporter | tr '\n' ' ')"
}
HOST_BEFORE=$(timer_host_state)

t0=$SECONDS
if boot_container; then
  BOOTED=$(date +%s)
  t_ok "systemd boots in the container ($((SECONDS - t0)) s)"
else
  t_fail "systemd boots in the container" "$(nspawn_log)"
  t_done
  exit 1
fi

# --- 1. the package ----------------------------------------------------------
out=$(in_ct dpkg -i /root/vhostfix.deb 2>&1)
t_eq "the .deb installs in the container" 0 "$?"
t_eq "the audit units are installed, neither enabled nor active" "disabled inactive" \
  "$(in_ct systemctl is-enabled vhostfix-audit.timer) $(in_ct systemctl is-active vhostfix-audit.timer)"
t_eq "the units are valid (systemd-analyze verify)" "" \
  "$(in_ct systemd-analyze verify vhostfix-audit.service vhostfix-audit.timer 2>&1 | grep -v -e '^$' -e 'dpdk\|ovs\|openvswitch')"
t_check "the alert rules are at /usr/share/vhostfix/prometheus/alerts.yml and valid" \
  in_ct promtool check rules /usr/share/vhostfix/prometheus/alerts.yml
t_eq "the service writes where Debian's node_exporter reads (its default)" "VHOSTFIX_TEXTFILE_DIR=$TEXTFILE" \
  "$(in_ct systemctl show -p Environment --value vhostfix-audit.service)"
t_eq "node_exporter reads that directory by default" \
  "--collector.textfile.directory=\"$TEXTFILE\"" \
  "$(in_ct prometheus-node-exporter --help 2>&1 | grep -o -- '--collector.textfile.directory="[^"]*"')"

t_check "systemctl enable --now vhostfix-audit.timer (as the unit says)" in_ct systemctl enable --now vhostfix-audit.timer
t_eq "the timer's schedule: 2 min after boot, then every 10 min" "OnBootUSec=2min OnUnitActiveUSec=10min" \
  "$(in_ct systemctl show -p TimersMonotonic --value vhostfix-audit.timer | grep -o 'On[A-Za-z]*USec=[0-9a-z]*' | sort | paste -sd' ')"
t_eq "node_exporter runs in the container" active "$(in_ct systemctl is-active prometheus-node-exporter.service)"

# Domains: the refused and the compliant one are defined now (the e1000 one
# came from disk when libvirtd started).
for n in win-ok win-unshared; do
  t_check "virsh define $P-$n" in_ct virsh -q -c qemu:///system define "/root/$n.xml"
done
t_contains "libvirt loaded the e1000 definition from disk as it was" \
  "$(in_ct virsh -c qemu:///system dumpxml --inactive "$P-win-e1000" 2>&1)" "<model type='e1000'/>"
wait_for "in_ct curl -sf $METRICS" 20
t_not_contains "before the timer fired, /metrics has no vhostfix series" "$(in_ct curl -s "$METRICS")" "vhostfix_"

# --- 6 (set up now, checked later): Prometheus with the shipped rules ---------
cat >"$ROOT/etc/vhostfix-test-prometheus.yml" <<'EOF'
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - /usr/share/vhostfix/prometheus/alerts.yml
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:9100']
EOF
t_check "Prometheus starts with the shipped rules (systemd-run)" in_ct systemd-run --unit=vhostfix-test-prometheus \
  --property=User=prometheus /usr/bin/prometheus --config.file=/etc/vhostfix-test-prometheus.yml \
  --storage.tsdb.path=/tmp/prom-data --web.listen-address=127.0.0.1:9090
wait_for "in_ct curl -sf $PROM/-/ready" 60 || t_fail "Prometheus is ready" "$(in_ct journalctl -q --no-pager -u vhostfix-test-prometheus | tail -5)"

# --- 2. the timer fires ---------------------------------------------------------
left=$((BOOTED + 125 - $(date +%s)))
t_log "waiting up to $((left > 0 ? left + 45 : 45)) s for the timer's first run (OnBootSec=2min, AccuracySec=30s)"
if wait_for "in_ct test -e $TEXTFILE/vhostfix.prom" $((left > 0 ? left + 45 : 45)); then
  t_ok "the timer fired by itself and the service wrote $TEXTFILE/vhostfix.prom"
else
  t_fail "the timer fired by itself" "$(in_ct systemctl list-timers --all vhostfix-audit.timer 2>&1)"
fi
fired=$(date +%s)
wait_for "[ \"\$(in_ct systemctl show -p ActiveState --value vhostfix-audit.service)\" = inactive ]" 20
t_eq "it fired about two minutes after the container started" yes \
  "$(d=$((fired - BOOTED)); [ $d -ge 90 ] && [ $d -le 170 ] && echo yes || echo "no: $d s")"
t_eq "the run exited 3 (a domain vhostfix cannot make work) and the unit still succeeded" "3 success" \
  "$(in_ct systemctl show -p ExecMainStatus --value vhostfix-audit.service) $(in_ct systemctl show -p Result --value vhostfix-audit.service)"
log=$(in_ct journalctl -q --no-pager -o cat -u vhostfix-audit.service)
summary=$(grep '^vhostfix-audit: ' <<<"$log" | tail -n 1)
t_contains "the journal says what the audit found" "$summary" "1 fixable, 1 refused; written to $TEXTFILE/vhostfix.prom"
t_eq "the textfile: mode 0644, root's, nothing half-written left" "644 root vhostfix.prom" \
  "$(in_ct stat -c '%a %U' "$TEXTFILE/vhostfix.prom") $(in_ct ls -A "$TEXTFILE" | grep vhostfix | paste -sd' ')"

metrics=$(in_ct curl -s "$METRICS")
ours=$(grep -E "^vhostfix_audit_(success|domain_compliant\\{[^}]*domain=\"$P-)" <<<"$metrics")
t_contains "/metrics: the Windows guest that needs fixing (not compliant, fixable)" "$ours" \
  "vhostfix_audit_domain_compliant{domain=\"$P-win-e1000\",result=\"fixable\",state=\"shut off\",xml=\"inactive\"} 0"
t_contains "/metrics: the Windows guest libvirt would refuse" "$ours" \
  "vhostfix_audit_domain_compliant{domain=\"$P-win-unshared\",result=\"refused\",state=\"shut off\",xml=\"inactive\"} 0"
t_contains "/metrics: the one that needs nothing (compliant)" "$ours" \
  "vhostfix_audit_domain_compliant{domain=\"$P-win-ok\",result=\"compliant\",state=\"shut off\",xml=\"inactive\"} 1"
t_contains "/metrics: the findings by severity" "$metrics" \
  "vhostfix_audit_findings{domain=\"$P-win-e1000\",severity=\"fixable\",xml=\"inactive\"} 1"
t_contains "/metrics: the audit's success" "$metrics" "vhostfix_audit_success 1"
ts=$(sed -n 's/^vhostfix_audit_last_run_timestamp_seconds \([0-9.e+]*\)$/\1/p' <<<"$metrics")
t_eq "/metrics: the audit's age (its last run, within 30 s of the file appearing)" yes \
  "$(awk -v t="$ts" -v f="$fired" 'BEGIN {d = f - t; print (t != "" && d >= -5 && d <= 30) ? "yes" : "no: ts=" t " fired=" f}')"
t_contains "/metrics: node_exporter read the file without error" "$metrics" 'node_textfile_scrape_error 0'
README_METRICS=$(grep -E "^vhostfix_audit_(success|domain_compliant)" <<<"$metrics")
README_JOURNAL=$summary

# --- 3. atomic replacement --------------------------------------------------------
# node_exporter reads every *.prom at each scrape; the audit writes a hidden
# temporary file and renames it. Each scrape must see the complete file. The
# service's command, 100 times back to back (systemd would refuse so many
# starts of the unit in a row: StartLimitBurst).
t1=$(date +%s.%N)
in_sh "for i in \$(seq 100); do VHOSTFIX_TEXTFILE_DIR=$TEXTFILE /usr/lib/vhostfix/audit-textfile 2>/dev/null; done" &
RUNS=$!
n=0 bad=0
while kill -0 "$RUNS" 2>/dev/null; do
  m=$(in_ct curl -s "$METRICS")
  n=$((n + 1))
  grep -qx 'node_textfile_scrape_error 0' <<<"$m" && grep -qx 'vhostfix_audit_success 1' <<<"$m" &&
    grep -q "domain=\"$P-win-ok\"" <<<"$m" || bad=$((bad + 1))
done
wait "$RUNS"
t_log "100 runs of audit-textfile took $(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; $n scrapes meanwhile"
t_eq "100 runs back to back: at least 20 scrapes meanwhile, each saw the whole file" "yes 0" \
  "$([ "$n" -ge 20 ] && echo yes || echo "no: $n scrapes") $bad"
t_eq "... and the runs left no temporary file" "vhostfix.prom" "$(in_ct ls -A "$TEXTFILE" | grep vhostfix | paste -sd' ')"

# audit_run: one run of the service (its start limit reset: the suite starts
# it more often than systemd allows by default).
audit_run() {
  in_ct systemctl reset-failed vhostfix-audit.service
  in_ct systemctl start vhostfix-audit.service 2>/dev/null
}
# audit_log: what the service logged in this boot.
audit_log() { in_ct journalctl -q --no-pager -o cat -u vhostfix-audit.service; }
# alerts: Prometheus' alerts, "NAME DOMAIN-OR-UNIT XML STATE" lines, sorted.
alerts() {
  in_ct curl -s "$PROM/api/v1/alerts" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    l = a["labels"]
    print(l["alertname"], l.get("domain", l.get("name", "-")), l.get("xml", "-"), a["state"])' | sort
}

# --- 4. the proxy's counters ---------------------------------------------------------
t_check "the proxy's sockets start" in_ct systemctl start vhostfix-proxy.socket vhostfix-proxy-ro.socket
out=$(in_ct virsh -c 'qemu:///system?socket=/run/vhostfix/libvirt-sock' define /root/seed.xml 2>&1)
t_contains "an e1000 Windows guest defined through the proxy is fixed" "$out" "defined"
audit_run
m=$(in_ct curl -s "$METRICS")
t_contains "/metrics: the proxy's counters while it runs (vhostfix-proxy.prom)" "$m" "vhostfix_proxy_calls_rewritten_total 1"
in_ct virsh -q -c qemu:///system undefine win2019-vhu >/dev/null 2>&1
# A second rewrite after Prometheus saw the first: the counter moves.
sleep 5
in_ct virsh -q -c 'qemu:///system?socket=/run/vhostfix/libvirt-sock' define /root/seed.xml >/dev/null 2>&1
in_ct virsh -q -c qemu:///system undefine win2019-vhu >/dev/null 2>&1
audit_run
t_contains "/metrics: the counter moved" "$(in_ct curl -s "$METRICS")" "vhostfix_proxy_calls_rewritten_total 2"
wait_for "in_ct curl -s '$PROM/api/v1/alerts' | grep -q VhostfixProxyRewrites" 30
alerts=$(in_ct curl -s "$PROM/api/v1/alerts")
t_contains "Prometheus: VhostfixProxyRewrites fires for the real counter" "$alerts" '"alertname":"VhostfixProxyRewrites"'

# A proxy whose --stats also gives a family vhostfix.prom has (as a build
# that reports transparent mode in both would): left out of the proxy's file.
cat >"$ROOT/root/vhostfix-dup" <<'EOF'
#!/bin/sh
/usr/bin/vhostfix "$@" || exit $?
if [ "$1 $2" = "proxy --stats" ]; then
  printf '# HELP vhostfix_audit_success dup\n# TYPE vhostfix_audit_success gauge\nvhostfix_audit_success 1\n'
fi
EOF
chmod 0755 "$ROOT/root/vhostfix-dup"
in_ct env VHOSTFIX_BIN=/root/vhostfix-dup VHOSTFIX_TEXTFILE_DIR=$TEXTFILE /usr/lib/vhostfix/audit-textfile 2>/dev/null
t_eq "a family vhostfix.prom has is left out of vhostfix-proxy.prom" "0 1" \
  "$(in_ct grep -c vhostfix_audit_success "$TEXTFILE/vhostfix-proxy.prom") $(in_ct grep -c '^vhostfix_proxy_calls_rewritten_total' "$TEXTFILE/vhostfix-proxy.prom")"
t_contains "... so node_exporter reads both files without error" "$(in_ct curl -s "$METRICS")" "node_textfile_scrape_error 0"
# What node_exporter does when two files give one family (measured, not asserted).
in_sh "printf '# HELP vhostfix_audit_success dup\n# TYPE vhostfix_audit_success gauge\nvhostfix_audit_success 7\n' >$TEXTFILE/zz-dup.prom"
t_log "node_exporter with one family in two files (values 1 and 7): $(in_ct curl -s -o /dev/null -w 'HTTP %{http_code}' "$METRICS"), $(in_ct curl -s "$METRICS" | grep -E '^node_textfile_scrape_error|^vhostfix_audit_success' | paste -sd' '); its log: $(in_ct journalctl -q --no-pager -o cat -u prometheus-node-exporter.service | grep -i 'zz-dup\|collected before\|duplicate' | tail -n 1)"
in_ct rm -f "$TEXTFILE/zz-dup.prom"

# A proxy that cannot start (a configuration it refuses): systemd restarts it
# until its start limit, which fails its sockets too.
in_sh "cp /etc/vhostfix/vhostfix.toml /root/good.toml && printf '[proxy]\nno_such_key = 1\n' >>/etc/vhostfix/vhostfix.toml"
in_ct systemctl restart vhostfix-proxy.service >/dev/null 2>&1
wait_for "in_ct systemctl is-failed -q vhostfix-proxy.socket" 30
t_eq "a proxy that cannot start: its service and socket fail" "failed failed" \
  "$(in_ct systemctl is-failed vhostfix-proxy.service vhostfix-proxy.socket | paste -sd' ')"
wait_for "alerts | grep -q '^VhostfixProxySocketFailed vhostfix-proxy.socket - firing$'" 30
a=$(alerts)
t_contains "Prometheus: VhostfixProxySocketFailed fires (node_exporter's systemd collector)" "$a" \
  "VhostfixProxySocketFailed vhostfix-proxy.socket - firing"
t_contains "Prometheus: VhostfixProxyFailed fires" "$a" "VhostfixProxyFailed vhostfix-proxy.service - firing"
in_sh "cp /root/good.toml /etc/vhostfix/vhostfix.toml"
in_ct systemctl stop vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket
in_ct systemctl reset-failed vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket
audit_run
t_eq "without a proxy its file goes away" "vhostfix.prom" "$(in_ct ls -A "$TEXTFILE" | grep vhostfix | paste -sd' ')"
t_not_contains "... and /metrics has no proxy counter" "$(in_ct curl -s "$METRICS")" "vhostfix_proxy_calls"

# --- 5. failures ---------------------------------------------------------------------
in_sh "mkdir -p /etc/systemd/system/vhostfix-audit.service.d && printf '[Service]\nEnvironment=VHOSTFIX_TEXTFILE_DIR=/nonexistent\n' >/etc/systemd/system/vhostfix-audit.service.d/test.conf && systemctl daemon-reload"
audit_run
t_eq "a textfile directory that does not exist fails the unit (exit 2)" "failed 2" \
  "$(in_ct systemctl is-failed vhostfix-audit.service) $(in_ct systemctl show -p ExecMainStatus --value vhostfix-audit.service)"
t_contains "... and the journal says what to do" "$(audit_log)" \
  "vhostfix-audit: error: /nonexistent is not a directory: install node_exporter"
in_sh "rm -r /etc/systemd/system/vhostfix-audit.service.d && systemctl daemon-reload"

in_ct systemctl stop libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd.service
audit_run
t_eq "libvirt down: the unit fails" failed "$(in_ct systemctl is-failed vhostfix-audit.service)"
m=$(in_ct curl -s "$METRICS")
t_contains "... /metrics says vhostfix_audit_success 0" "$m" "vhostfix_audit_success 0"
t_not_contains "... and keeps no stale verdict" "$m" "vhostfix_audit_domain_compliant"
t_contains "... the journal names the socket" "$(audit_log)" \
  "vhostfix: error: audit: /run/libvirt/libvirt-sock: cannot connect"
wait_for "alerts | grep -q '^VhostfixAuditFailed - - pending$'" 30
t_contains "Prometheus: VhostfixAuditFailed is pending (it fires after 15 min)" "$(alerts)" "VhostfixAuditFailed - - pending"
in_ct systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket
audit_run
t_contains "libvirt back: the next run succeeds" "$(in_ct curl -s "$METRICS")" "vhostfix_audit_success 1"

# --- 6. the alerts, from the real series ------------------------------------------------
# Once the failures above are over, only the domain alerts and the rewrites
# (the counter moved within the hour) fire.
EXPECTED="VhostfixDomainNotFixed $P-win-e1000 inactive firing
VhostfixDomainRefused $P-win-unshared inactive firing
VhostfixProxyRewrites - - firing"
wait_for '[ "$(alerts | grep " firing$")" = "$EXPECTED" ]' 30
t_eq "Prometheus: the domain alerts fire for exactly the two guests; nothing else fires but the rewrites" \
  "$EXPECTED" "$(alerts | grep ' firing$')"
t_log "pending alerts: $(alerts | grep ' pending$' | cut -d' ' -f1 | paste -sd' ')"
rules=$(in_ct curl -s "$PROM/api/v1/rules" | python3 -c '
import json, sys
print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
t_eq "Prometheus loaded every shipped rule" "$(grep -c '^      - alert:' "$REPO/integrations/prometheus/alerts.yml")" "$rules"

if [ "$T_FAIL" -gt 0 ] && [ -n "$LEADER" ]; then
  in_ct journalctl -q --no-pager -b -u vhostfix-audit.service -u vhostfix-audit.timer -u prometheus-node-exporter.service >"$T_TMP/journal.txt" 2>&1
  t_log "journal of the container:"
  tail -40 "$T_TMP/journal.txt" >&2
fi

# --- 7. the host -------------------------------------------------------------------
stop_container
t_eq "the container is gone" "" "$(pgrep -f -- "--machine=$MACHINE")"
t_eq "the host's libvirt, node_exporter, textfile directory and packages are as before" "$HOST_BEFORE" "$(timer_host_state)"

# --- the README's example --------------------------------------------------------
readme_block() { # MARK TEXT: the fenced block between the markers is TEXT
  local README=$REPO/README.md
  if [ -n "${VHOSTFIX_BLESS:-}" ]; then
    python3 - "$README" "$1" "$2" <<'PY'
import re, sys
path, mark, text = sys.argv[1:4]
s = open(path).read()
block = "<!-- %s: begin -->\n```\n%s\n```\n<!-- %s: end -->" % (mark, text, mark)
new, n = re.subn(r"<!-- %s: begin -->.*?<!-- %s: end -->" % (mark, mark), lambda m: block, s, flags=re.S)
assert n == 1, "README.md has no %s markers" % mark
open(path, "w").write(new)
PY
  fi
  t_eq "README's $1 example is what the suite saw (VHOSTFIX_BLESS=1 rewrites it)" "$2" \
    "$(awk -v m="$1" '$0 == "<!-- " m ": begin -->" {on=1; next} $0 == "<!-- " m ": end -->" {on=0} on' "$REPO/README.md" | sed -e '1d' -e '$d')"
}
readme_block fleet-metrics "\$ curl -s localhost:9100/metrics | grep ^vhostfix_audit
$README_METRICS
\$ journalctl -u vhostfix-audit.service -o cat
$README_JOURNAL"
t_done
