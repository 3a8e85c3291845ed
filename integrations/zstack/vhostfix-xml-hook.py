# vhostfix as a ZStack user-defined VM XML hook script.
#
# ZStack's contract (zstackio/zstack-utility,
# zstacklib/zstacklib/utils/xmlhook.py, get_modified_xml_from_hook;
# kvmagent/kvmagent/plugins/vm_plugin.py, Vm.start): the hook script is set
# per VM with the API SetVmUserDefinedXmlHookScript (base64). Before it defines
# the VM, the kvmagent parses the domain XML with xml.etree.ElementTree and
# exec()s this code with two names in scope: `root`, the <domain> Element, and
# `hook`, a helper object. After the code returns, the agent serialises `root`
# again and passes the result to libvirt's defineXML. So the code must change
# `root` in place; an exception fails the VM start.
#
# Here `root` is serialised, piped through `vhostfix filter`, and its contents
# replaced by the corrected tree. Whatever goes wrong in vhostfix, `root` is
# left as it was and the reason is logged (syslog and the agent's stderr), so
# the VM starts as it would without this hook. The kvmagent runs Python 2.7 on
# most hosts and Python 3 on newer ones; this code runs on both.


def _vhostfix_xml_hook(root):
    import os
    import subprocess
    import sys
    import syslog
    import xml.etree.ElementTree as ElementTree

    vhostfix = os.environ.get('VHOSTFIX_BIN') or '/usr/bin/vhostfix'
    timeout_expired = getattr(subprocess, 'TimeoutExpired', ())  # Python 3 only

    def log(priority, message):
        line = 'vhostfix xml hook: %s' % message
        try:
            sys.stderr.write(line + '\n')
        except Exception:
            pass
        try:
            syslog.syslog(priority, line)
        except Exception:
            pass

    try:
        original = ElementTree.tostring(root, encoding='utf-8')
        proc = subprocess.Popen([vhostfix, 'filter', '-'], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(original, timeout=20)
        except TypeError:  # Python 2: no timeout
            out, err = proc.communicate(original)
        except timeout_expired:
            proc.kill()
            proc.communicate()
            log(syslog.LOG_WARNING, "'%s filter' took longer than 20 s; the domain XML is left unchanged" % vhostfix)
            return
        messages = err.decode('utf-8', 'replace').strip()
        if proc.returncode != 0:
            log(syslog.LOG_WARNING, "'%s filter' failed (exit %d); the domain XML is left unchanged: %s"
                % (vhostfix, proc.returncode, messages))
            return
        if not out.strip():
            log(syslog.LOG_WARNING, "'%s filter' printed nothing; the domain XML is left unchanged" % vhostfix)
            return
        fixed = ElementTree.fromstring(out)
    except Exception as e:
        log(syslog.LOG_WARNING, "cannot run '%s filter' (%s); the domain XML is left unchanged" % (vhostfix, e))
        return

    if fixed.tag != root.tag:
        log(syslog.LOG_WARNING, "'%s filter' returned <%s>, not <%s>; the domain XML is left unchanged"
            % (vhostfix, fixed.tag, root.tag))
        return
    for line in messages.splitlines():
        warning = ': warning:' in line or ': error:' in line
        log(syslog.LOG_WARNING if warning else syslog.LOG_INFO, line)
    # Replace the contents of the agent's own Element: the agent serialises
    # that object, not a new one.
    tail = root.tail
    root.clear()
    root.attrib.update(fixed.attrib)
    root.text = fixed.text
    root.tail = tail
    root.extend(list(fixed))


_vhostfix_xml_hook(root)  # noqa: F821 (`root` is given by the kvmagent)
