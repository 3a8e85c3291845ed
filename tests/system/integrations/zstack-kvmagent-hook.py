#!/usr/bin/env python
"""Run a ZStack user-defined XML hook script the way ZStack's kvmagent does.

Usage: zstack-kvmagent-hook.py HOOK_SCRIPT XML_FILE

Follows the contract of zstackio/zstack-utility's
zstacklib/zstacklib/utils/xmlhook.py (get_modified_xml_from_hook), written
for vhostfix's tests: the XML is parsed with xml.etree.ElementTree (the `zs`
prefix registered for http://zstack.org, as kvmagent's vm_plugin does); the
script is exec()d with `hook` (a helper object) and `root` (the <domain>
Element) in scope; then `root` is serialised, pretty-printed with minidom and
stripped of blank lines, and printed on stdout. An exception in the script
exits 1 (the agent fails the VM start). Runs on Python 2.7 and 3.
"""
import os
import sys
import xml.etree.ElementTree as ElementTree
from xml.dom import minidom

ElementTree.register_namespace('zs', 'http://zstack.org')


class Helper(object):
    """Stands in for the agent's XmlHook helper; vhostfix's hook does not use it."""

    def serialise(self, root):
        pretty = minidom.parseString(ElementTree.tostring(root)).toprettyxml()
        return os.linesep.join(line for line in pretty.splitlines() if line.strip())


def main():
    hook_file, xml_file = sys.argv[1:3]
    with open(hook_file) as f:
        code = f.read()
    with open(xml_file, 'rb') as f:
        root = ElementTree.fromstring(f.read())
    hook = Helper()
    scope = {'hook': hook, 'root': root}
    exec(code, scope)
    out = hook.serialise(root)
    if not isinstance(out, str):  # Python 2: unicode
        out = out.encode('utf-8')
    sys.stdout.write(out + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
