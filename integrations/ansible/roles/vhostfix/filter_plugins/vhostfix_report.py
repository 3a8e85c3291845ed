# Filters that turn the `vhostfix audit --json` results the role gathered
# (the registered variable vhostfix__audit of each host) into the report
# written on the controller: one JSON document per host, and a summary table.
import json

RESULTS = ("compliant", "warning", "fixable", "refused", "error")


def _outcome(hv):
    """(document, problem) for one host's hostvars: the parsed audit, or why
    there is none."""
    run = hv.get("vhostfix__audit") if hv is not None else None
    if not run:
        return None, "no audit: the play failed on this host before it"
    if run.get("skipped"):
        return None, "not audited: vhostfix is not installed (yet)"
    text = run.get("stdout") or ""
    rc = run.get("rc")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if rc in (0, 1, 3) and isinstance(doc, dict):
        return doc, None
    err = (run.get("stderr") or run.get("msg") or "").strip().splitlines()
    return doc if isinstance(doc, dict) else None, "exit %s: %s" % (rc, err[0] if err else "no message")


def vhostfix_audit_json(hv, host):
    """The host's audit as a JSON document (with the error when it failed)."""
    doc, problem = _outcome(hv)
    if doc is None:
        doc = {"host": str(host), "error": problem}
    elif problem:
        doc = dict(doc, error=problem)
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def _table(rows):
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], width)] + [r[-1]]
        out.append("  ".join(cells).rstrip())
    return out


def vhostfix_summary(hostvars, hosts):
    """One line per host (the audit's summary), then every domain XML that is
    not compliant, then the hosts whose audit failed."""
    head = ["HOST", "LIBVIRT", "XMLS"] + [r.upper() for r in RESULTS] + ["EXIT"]
    per_host = [head]
    findings = [["HOST", "DOMAIN", "STATE", "XML", "RESULT"]]
    problems = []
    for host in hosts:
        host = str(host)
        doc, problem = _outcome(hostvars.get(host))
        if doc is None:
            per_host.append([host, "-", "-"] + ["-"] * len(RESULTS) + ["-"])
        else:
            s = doc.get("summary", {})
            per_host.append(
                [host, str(doc.get("libvirt") or "-"), str(s.get("rows", "-"))]
                + [str(s.get(r, "-")) for r in RESULTS]
                + [str(doc.get("exit", "-"))]
            )
            for row in doc.get("domains", []):
                if row.get("result") != "compliant":
                    findings.append([host, row.get("domain", "?"), row.get("state", "?"),
                                     row.get("xml", "?"), row.get("result", "?")])
        if problem:
            problems.append("%s: %s" % (host, problem))
    sections = [_table(per_host)]
    if len(findings) > 1:
        sections.append(["Domain XMLs that are not compliant:"] + _table(findings))
    elif len(problems) < len(hosts):
        sections.append(["Every domain XML audited is compliant."])
    if problems:
        sections.append(["Hosts without a complete audit:"] + problems)
    out = []
    for s in sections:
        out.extend(([""] if out else []) + s)
    return "\n".join(out) + "\n"


class FilterModule(object):
    def filters(self):
        return {
            "vhostfix_audit_json": vhostfix_audit_json,
            "vhostfix_summary": vhostfix_summary,
        }
