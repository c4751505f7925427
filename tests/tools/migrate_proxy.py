#!/usr/bin/env python3
"""A UNIX socket relay between a migration's source and its destination,
for the migration tests: it forwards one connection both ways and can
damage the source's bytes on the way.

    migrate_proxy.py LISTEN TARGET COUNT_FILE [--corrupt-at N]
                     [--cut-at N] [--stall-at N MARKER] [--hold-at N MARKER]

--corrupt-at N flips the bits of the Nth byte (from 0) the source sends;
--cut-at N closes both sides after forwarding N bytes of the source's;
--stall-at N MARKER stops forwarding after N bytes and creates MARKER,
then forwards nothing more (the test kills a side meanwhile);
--hold-at N MARKER stops reading the source after N bytes and creates
MARKER: the source's sends then block once its socket is full, in the
phase they were in, until a side closes;
--drop-replies-after N forwards only the first N bytes the destination
sends back (a link lost after the switch, when N ends with READY).
--rate N forwards the source's bytes at N bytes a second at most (a slow
link: a pre-copy that cannot converge);
COUNT_FILE gets the number of the source's bytes forwarded, at the end.
Connections after the first (a post-copy source's priority connection)
are forwarded as they are, each on a thread of its own.
"""
import os
import select
import socket
import sys
import threading
import time


def relay(a, target):
    """Forwards a later connection both ways, untouched, until a side
    closes."""
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        b.connect(target)
        while True:
            r, _, _ = select.select([a, b], [], [])
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


def accept_more(srv, target):
    while True:
        try:
            a, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=relay, args=(a, target), daemon=True).start()


def held(src, dst):
    """Reads nothing more of the source; forwards the destination's
    answers until either side closes (the source's close is its hang-up,
    seen without reading what it sent)."""
    p = select.poll()
    p.register(src, select.POLLRDHUP)
    p.register(dst, select.POLLIN)
    while True:
        for fd, _ in p.poll():
            if fd == src.fileno():
                return
            data = dst.recv(65536)
            if not data:
                return
            src.sendall(data)


def main():
    args = sys.argv[1:]
    listen, target, count_file = args[:3]
    corrupt = cut = stall = hold = replies = rate = None
    marker = None
    rest = args[3:]
    while rest:
        opt = rest.pop(0)
        if opt == "--corrupt-at":
            corrupt = int(rest.pop(0))
        elif opt == "--cut-at":
            cut = int(rest.pop(0))
        elif opt == "--rate":
            rate = int(rest.pop(0))
        elif opt == "--drop-replies-after":
            replies = int(rest.pop(0))
        elif opt in ("--stall-at", "--hold-at"):
            n = int(rest.pop(0))
            marker = rest.pop(0)
            if opt == "--stall-at":
                stall = n
            else:
                hold = n
        else:
            sys.exit("unknown option " + opt)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(listen)
    srv.listen(4)
    src, _ = srv.accept()
    dst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dst.connect(target)
    threading.Thread(target=accept_more, args=(srv, target),
                     daemon=True).start()
    sent = 0
    back = 0
    stalled = False
    try:
        while True:
            r, _, _ = select.select([src, dst], [], [])
            # The destination's answers first: an ERROR it sent before
            # closing must reach the source.
            if dst in r:
                data = dst.recv(65536)
                if not data:
                    break
                if replies is not None:
                    data = data[:max(0, replies - back)]
                back += len(data)
                src.sendall(data)
                continue
            if stalled:
                # Stalled: the source's bytes are read and dropped, so
                # that only a side's death (or its timeout) ends this.
                if not src.recv(65536):
                    break
                continue
            data = src.recv(65536)
            if not data:
                break
            limit = len(data)
            for lim in (cut, stall, hold):
                if lim is not None and sent + limit > lim:
                    limit = max(0, lim - sent)
            data = bytearray(data[:limit])
            if corrupt is not None and sent <= corrupt < sent + len(data):
                data[corrupt - sent] ^= 0xFF
            dst.sendall(data)
            sent += len(data)
            if rate:
                time.sleep(len(data) / rate)
            if cut is not None and sent >= cut:
                break
            if stall is not None and sent >= stall:
                stalled = True
                open(marker, "w").close()
            if hold is not None and sent >= hold:
                open(marker, "w").close()
                held(src, dst)
                break
    except OSError:
        # The destination went away: what it said last still goes on.
        try:
            dst.settimeout(1)
            while True:
                data = dst.recv(65536)
                if not data:
                    break
                src.sendall(data)
        except OSError:
            pass
    with open(count_file, "w") as f:
        f.write("%d\n" % sent)
    src.close()
    dst.close()


if __name__ == "__main__":
    main()
