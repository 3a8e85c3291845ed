# An Ansible connection for tests/system/ansible.sh: reaches a "host" that is
# a chroot or a container on this machine by running every command under a
# prefix (`chroot ROOT env -i ...`, `nsenter -t PID -a env -i ...`), without a
# network. ansible-core ships no chroot connection (that one is in the
# community.general collection); this one is small because it needs nothing
# but exec: files go in with `cat > PATH` and come out with `cat PATH`.
#
# Inventory: ansible_connection=vhostfix_exec
#            ansible_vhostfix_exec_prefix='chroot /var/tmp/r/bullseye env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin'
import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: vhostfix_exec
short_description: run commands under a prefix (chroot, nsenter) on this machine
description:
  - Test transport of vhostfix's Ansible suite. Every command, and every file
    transfer, runs as PREFIX /bin/sh -c COMMAND.
options:
  exec_prefix:
    description: the command words put before /bin/sh -c COMMAND
    type: str
    required: true
    vars:
      - name: ansible_vhostfix_exec_prefix
"""


class Connection(ConnectionBase):
    transport = "vhostfix_exec"
    has_pipelining = True

    def _prefix(self):
        prefix = shlex.split(self.get_option("exec_prefix") or "")
        if not prefix:
            raise AnsibleConnectionFailure("vhostfix_exec: ansible_vhostfix_exec_prefix is empty")
        return prefix

    def _connect(self):
        self._connected = True
        return self

    def _run(self, script, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE):
        argv = self._prefix() + ["/bin/sh", "-c", script]
        self._display.vvv("EXEC %s" % " ".join(shlex.quote(a) for a in argv), host=self._play_context.remote_addr)
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        p = self._run(cmd, stdin=subprocess.PIPE if in_data is not None else subprocess.DEVNULL)
        out, err = p.communicate(in_data)
        return p.returncode, out, err

    def _copy(self, script, what, **streams):
        p = self._run(script, **streams)
        _, err = p.communicate()
        if p.returncode != 0:
            raise AnsibleConnectionFailure("vhostfix_exec: %s: %s" % (what, err.decode(errors="replace")))

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as f:
            self._copy("cat > %s" % shlex.quote(out_path), "writing " + out_path, stdin=f)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        with open(out_path, "wb") as f:
            self._copy("cat %s" % shlex.quote(in_path), "reading " + in_path, stdout=f)

    def close(self):
        self._connected = False
