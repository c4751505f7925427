#!/usr/bin/env python3
"""The network on the other end of a VM's virtio-net UNIX datagram
backend, for the migration tests: it logs every frame the VM sends and
sends it netmig's numbered frames.

    net_peer.py SOCKET LOG [--pps N]

Binds SOCKET (a datagram socket; the VM's --net gives it as peer=). Each
frame received is one line of LOG, flushed at once:

    data SRC_MAC SEQ        a netmig data frame (checked intact, else BAD)
    rarp SRC_MAC SHA THA    a RARP frame: the source and the addresses
    other SRC_MAC TYPE      anything else

and each new sender address is logged as `from PATH`. Numbered frames
(1, 2, ...) go at N per second (200) to the last sender, the way a
switch learns a station's port from the frames it sends: after a
migration, the VM's first frame from its new backend redirects them.
"""
import os
import select
import socket
import sys
import time

ETHERTYPE = 0x88B5
ETHERTYPE_RARP = 0x8035
MAGIC = 0x47494D4E
FRAME_LEN = 128
HDR = 14 + 16
M64 = (1 << 64) - 1


def mix64(x):
    """guest_mix64 of the guest kit."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def payload(seq):
    m = mix64(seq)
    return bytes(((m >> (8 * (i % 8))) & 0xFF) ^ (i & 0xFF)
                 for i in range(HDR, FRAME_LEN))


def mac(b):
    return ":".join("%02x" % c for c in b)


def describe(f):
    if len(f) < 14:
        return "short %d" % len(f)
    src, etype = mac(f[6:12]), int.from_bytes(f[12:14], "big")
    if etype == ETHERTYPE and len(f) >= HDR and \
            int.from_bytes(f[14:18], "little") == MAGIC:
        seq = int.from_bytes(f[22:30], "little")
        ok = len(f) == FRAME_LEN and f[HDR:] == payload(seq)
        return "%s %s %d" % ("data" if ok else "BAD", src, seq)
    if etype == ETHERTYPE_RARP and len(f) >= 14 + 28:
        a = f[14:]
        return "rarp %s %s %s op %d" % (src, mac(a[8:14]), mac(a[18:24]),
                                       int.from_bytes(a[6:8], "big"))
    return "other %s 0x%04x" % (src, etype)


def main():
    path, logpath = sys.argv[1], sys.argv[2]
    pps = 200
    if len(sys.argv) > 4 and sys.argv[3] == "--pps":
        pps = int(sys.argv[4])
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setblocking(False)
    log = open(logpath, "w", buffering=1)
    peer, seq, step = None, 0, 1.0 / pps
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        timeout = max(0.0, next_send - now)
        r, _, _ = select.select([s], [], [], timeout)
        if r:
            while True:
                try:
                    f, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr and addr != peer:
                    peer = addr
                    log.write("from %s\n" % addr)
                log.write(describe(f) + "\n")
        now = time.monotonic()
        if now >= next_send:
            next_send = max(next_send + step, now - 1.0)
            if peer:
                frame = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" +
                         ETHERTYPE.to_bytes(2, "big") +
                         MAGIC.to_bytes(4, "little") + bytes(4) +
                         (seq + 1).to_bytes(8, "little") + payload(seq + 1))
                try:
                    s.sendto(frame, peer)
                    seq += 1
                except (BlockingIOError, ConnectionRefusedError,
                        FileNotFoundError):
                    pass  # a full or vanished station: the frame is lost


if __name__ == "__main__":
    main()
