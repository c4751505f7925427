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
sends back (a link lost after the switch, when N ends with READY);
--rate N forwards the source's bytes at N bytes a second at most, on
each connection (a slow link: pre-copy lasts as long on any host).
--conns N relays N connections (a migration's --connections), each to a
connection of its own to TARGET; the options above then apply to the
one --damage K names (from 0, the main one; default 0) and COUNT_FILE
gets its count; any connection after those is forwarded untouched (a
post-copy's priority connection).
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


def relay_plain(a, target):
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
        threading.Thread(target=relay_plain, args=(a, target), daemon=True).start()


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
    conns, damage = 1, 0
    rest = args[3:]
    while rest:
        opt = rest.pop(0)
        if opt == "--corrupt-at":
            corrupt = int(rest.pop(0))
        elif opt == "--cut-at":
            cut = int(rest.pop(0))
        elif opt == "--rate":
            rate = int(rest.pop(0))
        elif opt == "--conns":
            conns = int(rest.pop(0))
        elif opt == "--damage":
            damage = int(rest.pop(0))
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
    srv.listen(conns)
    threads = []
    for i in range(conns):
        # The further connections come at once, or not at all (the
        # migration failed first).
        if i:
            srv.settimeout(30)
        try:
            src, _ = srv.accept()
        except socket.timeout:
            break
        dst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dst.connect(target)
        if i == damage:
            opts = (corrupt, cut, stall, hold, replies, marker, count_file)
        else:
            opts = (None,) * 7
        t = threading.Thread(target=relay, args=(src, dst, rate) + opts)
        t.start()
        threads.append(t)
    srv.settimeout(None)
    threading.Thread(target=accept_more, args=(srv, target),
                     daemon=True).start()
    for t in threads:
        t.join()
    srv.close()


def relay(src, dst, rate, corrupt, cut, stall, hold, replies, marker,
          count_file):
    """Forwards one connection both ways, damaging it as asked."""
    start = time.monotonic()
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
                ahead = start + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
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
    if count_file:
        with open(count_file, "w") as f:
            f.write("%d\n" % sent)
    src.close()
    dst.close()


if __name__ == "__main__":
    main()
