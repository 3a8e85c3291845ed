#!/usr/bin/env python3
"""Run the hooks of one vdsm hook directory the way vdsm does.

Usage: vdsm-run-hooks.py HOOKS_DIR EVENT XML_FILE [KEY=VALUE...]

Follows the contract of oVirt vdsm's lib/vdsm/common/hooks.py (_runHooksDir),
written for vhostfix's tests: the XML goes into a fresh temporary file named
by $_hook_domxml; every executable regular file in HOOKS_DIR/EVENT runs in
name order, with no arguments, its stdout and stderr captured; KEY=VALUE pairs
(custom properties, vmId) are added to the environment; a status of 2 stops
the chain. Afterwards the file is read back and printed on stdout. Each
hook's status and stderr are printed on stderr as "HOOK: rc=N err=..."; the
exit status is 1 when a hook failed (vdsm would then fail the operation).
"""
import os
import subprocess
import sys
import tempfile


def main():
    hooks_dir, event, xml_file = sys.argv[1:4]
    extra = dict(kv.split('=', 1) for kv in sys.argv[4:])
    with open(xml_file, encoding='utf-8') as f:
        data = f.read()
    event_dir = os.path.join(hooks_dir, event)
    scripts = sorted(
        os.path.join(event_dir, n)
        for n in os.listdir(event_dir)
        if os.path.isfile(os.path.join(event_dir, n)) and os.access(os.path.join(event_dir, n), os.X_OK)
    )
    fd, name = tempfile.mkstemp()
    failed = False
    try:
        os.write(fd, data.encode('utf-8'))
        os.close(fd)
        env = dict(os.environ)
        env.update(extra)
        env['_hook_domxml'] = name
        for script in scripts:
            p = subprocess.run([script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            sys.stderr.write('%s: rc=%d err=%s\n' % (script, p.returncode, p.stderr.decode('utf-8', 'replace')))
            if p.returncode != 0:
                failed = True
            if p.returncode == 2:
                break
        with open(name, encoding='utf-8') as f:
            sys.stdout.write(f.read())
    finally:
        os.unlink(name)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
