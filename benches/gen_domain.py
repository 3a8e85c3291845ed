#!/usr/bin/env python3
"""Writes a large, deterministic libvirt domain XML for vhostfix's benchmarks.

The default document is the "big domain" of BENCHMARKS.md: a Windows guest
(libosinfo id, hyperv enlightenments, hypervclock, localtime clock) with 1000
disks and 256 NICs, about 5 MB. Disks look like live XML of volumes with
external-snapshot backing chains (which is what makes real domains this large);
NICs are a mix of vhost-user ports (e1000 = to fix, no model = to fix, virtio =
compliant) and bridge/network ports with virtio or e1000e.

    gen_domain.py [--mb SIZE | --scale F] [-o FILE]

--mb SIZE scales the disk and NIC counts so that the document is about SIZE
megabytes (1 MB = 10^6 bytes); --scale F multiplies them by F (1.0 = the big
domain). Output is byte-for-byte reproducible: no randomness, no clock.
"""

import argparse
import sys

BASE_NICS = 256
BASE_DISKS = 1000
# Size of the document at scale 1.0, measured; used only to turn --mb into a scale.
BASE_BYTES = 5_122_494

HEAD = """<domain type='kvm' id='17'>
  <name>win2019-bigdomain</name>
  <uuid>3e0b7c2a-5d41-4f0e-8a9c-6b2d1f0e7a11</uuid>
  <description>Windows Server 2019 storage gateway (benchmark domain)</description>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://microsoft.com/win/2k19"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>67108864</memory>
  <currentMemory unit='KiB'>67108864</currentMemory>
  <memoryBacking>
    <hugepages>
      <page size='1048576' unit='KiB'/>
    </hugepages>
    <access mode='shared'/>
  </memoryBacking>
  <vcpu placement='static'>32</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <hyperv mode='custom'>
      <relaxed state='on'/>
      <vapic state='on'/>
      <spinlocks state='on' retries='8191'/>
    </hyperv>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'>
    <topology sockets='2' dies='1' cores='8' threads='2'/>
    <numa>
      <cell id='0' cpus='0-15' memory='33554432' unit='KiB' memAccess='shared'/>
      <cell id='1' cpus='16-31' memory='33554432' unit='KiB' memAccess='shared'/>
    </numa>
  </cpu>
  <clock offset='localtime'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
    <timer name='hypervclock' present='yes'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
"""

TAIL = """    <serial type='pty'>
      <source path='/dev/pts/7'/>
      <target type='isa-serial' port='0'/>
      <alias name='serial0'/>
    </serial>
    <input type='tablet' bus='usb'>
      <alias name='input0'/>
    </input>
    <graphics type='vnc' port='5917' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <memballoon model='none'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+64055</label>
    <imagelabel>+64055:+64055</imagelabel>
  </seclabel>
</domain>
"""


def disk_name(i):
    """sda .. sdz, sdaa .. (as libvirt names SCSI disks)."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return "sd" + s


def disk(i):
    """One SCSI disk of a tenant volume with a backing chain 14..27 deep."""
    vol = f"/var/lib/libvirt/images/tenant-{4700 + i % 37}/vol-{i:06d}"
    depth = 14 + (i * 7) % 14
    out = [
        "    <disk type='file' device='disk'>\n",
        "      <driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap'/>\n",
        f"      <source file='{vol}/snap-{depth:04d}.qcow2' index='{depth + 1}'/>\n",
    ]
    pad = "      "
    for level in range(depth, 0, -1):
        out.append(f"{pad}<backingStore type='file' index='{level}'>\n")
        out.append(f"{pad}  <format type='qcow2'/>\n")
        out.append(f"{pad}  <source file='{vol}/snap-{level - 1:04d}.qcow2'/>\n")
        pad += "  "
    out.append(f"{pad}<backingStore/>\n")
    for _ in range(depth):
        pad = pad[:-2]
        out.append(f"{pad}</backingStore>\n")
    out += [
        f"      <target dev='{disk_name(i)}' bus='scsi'/>\n",
        "      <iotune>\n",
        f"        <total_bytes_sec>{(200 + i % 5 * 100) * 1048576}</total_bytes_sec>\n",
        f"        <total_iops_sec>{4000 + i % 7 * 1000}</total_iops_sec>\n",
        "      </iotune>\n",
        f"      <serial>vol-{i:06d}</serial>\n",
        f"      <alias name='scsi{i // 256}-0-0-{i % 256}'/>\n",
        f"      <address type='drive' controller='{i // 256}' bus='0' target='0' unit='{i % 256}'/>\n",
        "    </disk>\n",
    ]
    return "".join(out)


def nic(i):
    """One NIC; the pattern repeats every 16: 4 vhost-user e1000, 1 vhost-user
    without model, 3 vhost-user virtio, 5 bridge virtio, 3 network e1000e."""
    mac = f"52:54:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"
    bus = 0x10 + i // 32
    slot = i % 32
    kind = i % 16
    head = [f"      <mac address='{mac}'/>\n"]
    if kind < 8:
        body = [
            f"      <source type='unix' path='/var/run/openvswitch/vhu{i:04d}' mode='server'/>\n",
            f"      <target dev='vhu{i:04d}'/>\n",
        ]
        if kind < 4:
            body.append("      <model type='e1000'/>\n")
        elif kind > 4:
            body.append("      <model type='virtio'/>\n")
            body.append("      <driver queues='4' rx_queue_size='1024' tx_queue_size='1024'/>\n")
        open_tag = "    <interface type='vhostuser'>\n"
    elif kind < 13:
        body = [
            f"      <source bridge='br-tenant{i % 8}'/>\n",
            f"      <target dev='vnet{i}'/>\n",
            "      <model type='virtio'/>\n",
            "      <driver name='vhost' queues='4'/>\n",
        ]
        open_tag = "    <interface type='bridge'>\n"
    else:
        body = [
            "      <source network='default' portid='"
            f"{i:08x}-0d1e-4c2b-9a8f-7e6d5c4b3a29' bridge='virbr0'/>\n",
            f"      <target dev='vnet{i}'/>\n",
            "      <model type='e1000e'/>\n",
        ]
        open_tag = "    <interface type='network'>\n"
    tail = [
        f"      <alias name='net{i}'/>\n",
        f"      <address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' function='0x0'/>\n",
        "    </interface>\n",
    ]
    return open_tag + "".join(head + body + tail)


def controllers(n_disks):
    out = []
    for c in range((n_disks + 255) // 256):
        out.append(f"    <controller type='scsi' index='{c}' model='virtio-scsi'>\n")
        out.append(f"      <alias name='scsi{c}'/>\n")
        out.append("    </controller>\n")
    return "".join(out)


def domain(scale=1.0):
    n_nics = max(1, round(BASE_NICS * scale))
    n_disks = max(1, round(BASE_DISKS * scale))
    parts = [HEAD]
    parts += [disk(i) for i in range(n_disks)]
    parts.append(controllers(n_disks))
    parts += [nic(i) for i in range(n_nics)]
    parts.append(TAIL)
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--mb", type=float, help="approximate size in MB (10^6 bytes)")
    g.add_argument("--scale", type=float, help="multiplies 1000 disks and 256 NICs")
    ap.add_argument("-o", "--output", help="output file (default: stdout)")
    a = ap.parse_args()
    scale = a.scale if a.scale is not None else (a.mb * 1e6 / BASE_BYTES if a.mb else 1.0)
    text = domain(scale).encode()
    if a.output:
        with open(a.output, "wb") as f:
            f.write(text)
    else:
        sys.stdout.buffer.write(text)


if __name__ == "__main__":
    main()
