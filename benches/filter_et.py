#!/usr/bin/env python3
"""Baseline for benches/process.sh: `vhostfix filter` done with ElementTree.

    filter_et.py FILE > OUT

Parses a libvirt <domain> (or <interface>) XML, decides whether the guest is
Windows from the same main signals as vhostfix (its own metadata override,
libosinfo os id, nova os_type, hyperv enlightenments, hypervclock timer,
a description naming Windows, a localtime clock; same precedence), gives every
vhost-user NIC without a virtio model the model 'virtio' when it is, and writes
the XML to stdout. Namespace prefixes are kept; unlike vhostfix, the document is
re-serialised (quoting, comments before the root, etc. may change).
"""

import sys
import xml.etree.ElementTree as ET

OVERRIDE_NS = "urn:vhostfix:guest:1"
LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
NOVA_NS_PREFIX = "http://openstack.org/xmlns/libvirt/nova/"
VIRTIO = {"virtio", "virtio-transitional", "virtio-non-transitional"}
OVERRIDE, STRONG, HEURISTIC = 3, 2, 1


def split(tag):
    """'{ns}name' -> (ns, name); 'name' -> (None, name)."""
    if tag[:1] == "{":
        ns, name = tag[1:].split("}", 1)
        return ns, name
    return None, tag


def is_windows(domain):
    found = []  # (weight, windows)
    meta = domain.find("metadata")
    if meta is not None:
        for el in meta.iter():
            ns, name = split(el.tag)
            if ns == OVERRIDE_NS and name == "guest" and el.get("os") is not None:
                os_ = el.get("os")
                if os_ not in ("windows", "other"):
                    sys.exit(f"filter_et: bad override os='{os_}'")
                found.append((OVERRIDE, os_ == "windows"))
            elif ns == LIBOSINFO_NS and name == "os" and el.get("id") is not None:
                id_ = el.get("id")
                found.append((STRONG, id_.startswith(("http://microsoft.com/win/", "http://microsoft.com/winnt/"))))
            elif ns and ns.startswith(NOVA_NS_PREFIX) and name == "property" and el.get("name") == "os_type":
                found.append((STRONG, (el.text or "").strip().lower() == "windows"))
    hv = domain.find("features/hyperv")
    if hv is not None and (hv.get("mode") == "passthrough" or any(c.get("state") == "on" for c in hv)):
        found.append((HEURISTIC, True))
    clock = domain.find("clock")
    if clock is not None:
        if any(t.tag == "timer" and t.get("name") == "hypervclock" and t.get("present") == "yes" for t in clock):
            found.append((HEURISTIC, True))
        if clock.get("offset") == "localtime":
            found.append((HEURISTIC, True))
    desc = domain.find("description")
    if desc is not None and "windows" in (desc.text or "").lower():
        found.append((HEURISTIC, True))
    if not found:
        return False
    top = max(w for w, _ in found)
    if top == OVERRIDE:
        return next(win for w, win in found if w == OVERRIDE)
    return any(win for w, win in found if w == top)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: filter_et.py FILE")
    # iterparse only to learn the namespace prefixes, so the output keeps them.
    it = ET.iterparse(sys.argv[1], events=("start-ns",))
    for _, (prefix, uri) in it:
        ET.register_namespace(prefix, uri)
    root = it.root
    if root.tag == "interface":
        nics = [root]
        fix = False  # device XML says nothing about the guest OS (as vhostfix)
    elif root.tag == "domain":
        nics = root.findall("devices/interface")
        fix = is_windows(root)
    else:
        sys.exit(f"filter_et: root element is <{root.tag}>")
    if fix:
        for nic in nics:
            if nic.get("type") != "vhostuser":
                continue
            model = nic.find("model")
            if model is None:
                model = ET.SubElement(nic, "model")
            if (model.get("type") or "").lower() not in VIRTIO:
                model.set("type", "virtio")
    ET.ElementTree(root).write(sys.stdout.buffer, encoding="utf-8")


if __name__ == "__main__":
    main()
