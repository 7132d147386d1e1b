#!/usr/bin/env python3
"""Writes the hand-made seeds of the three fuzz targets into Fuzz/Corpus/<target>/seed-*.

Frame and connection seeds are the byte layouts of docs' protocol reference (ALIVE2 with both reply
forms, PORT_PLEASE2, NAMES, DUMP, KILL, STOP, and malformed frames); router seeds are the contract's
paths, query values and headers (openapi/openapi.yaml), valid and invalid, the way schemathesis
varies them. The committed corpus is what `scripts/fuzz --merge TARGET` kept of these and of what
runs found; rerun this only to restart from the seeds.
Input layouts: see the comment at the top of each Fuzz/Sources/Fuzz*/Fuzz*.swift.
"""
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus")


def write(target, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as handle:
        handle.write(data)


def frame(body):
    return struct.pack(">H", len(body)) + body


def alive2(name=b"foo", port=43210, node_type=77, high=6, low=5, extra=b""):
    return (bytes([120]) + struct.pack(">HBBHHH", port, node_type, 0, high, low, len(name)) + name
            + struct.pack(">H", len(extra)) + extra)


BODIES = [
    alive2(),                                  # ALIVE2_X_RESP (highest version 6)
    alive2(b"bar", high=5),                    # ALIVE2_RESP (4 bytes)
    alive2(b"hidden", node_type=72, extra=b"\x00\x01\x02"),
    alive2(b"", port=1),                       # empty name: refused by the registry
    alive2(b"a" * 255),
    alive2("n\u00e9".encode()),
    alive2(b"foo") + b"\x00" * 8,              # junk after Extra: registers
    alive2(b"foo")[:12],                       # too small
    bytes([122]) + b"foo",                     # PORT_PLEASE2
    bytes([122]) + b"foo\x00",                 # trailing NUL stripped
    bytes([122]) + b"fo\x00o",                 # inner NUL
    bytes([122]),                              # empty name
    bytes([122]) + b"\xff\xfe",                # not UTF-8
    bytes([110]),                              # NAMES
    bytes([110, ord("X")]),                    # NAMES with an extra byte: still NAMES
    bytes([100]),                              # DUMP
    bytes([107]),                              # KILL
    bytes([115]) + b"foo",                     # STOP
    bytes([115]),                              # STOP without a name
    bytes([121, 0, 0, 0]),                     # a reply code: unknown request
    bytes([0]),
]


def frame_seeds():
    for body in BODIES:
        write("frame", b"\x00" + frame(body))              # one read
        write("frame", b"\x02\x01\x03" + frame(body))      # split after 1 and 3 more bytes
    write("frame", b"\x00\x00\x00")                        # length 0
    write("frame", b"\x00\x0b\xf2")                        # length 3058
    write("frame", b"\x00" + frame(bytes([110])) + b"n")   # overrun (two requests in one write)
    write("frame", b"\x00\x0b\xf1" + bytes([122]) + b"a" * 3056)   # longest request


def receive(slot, data):
    # Event kind 0 (bytes arrive): length byte, bytes; chunks of at most 255 bytes.
    out = b""
    for start in range(0, max(1, len(data)), 255):
        chunk = data[start:start + 255]
        out += bytes([slot | (0 << 2), len(chunk)]) + chunk
    return out


def written(slot):
    return bytes([slot | (1 << 2)])


def terminated(slot):
    return bytes([slot | (2 << 2)])


def reopen(slot, flags):
    return bytes([slot | (3 << 2), flags])


def adopt(slot):
    return bytes([slot | (4 << 2)])


def connection_seeds():
    register = receive(0, frame(alive2())) + written(0)
    lookup = receive(1, frame(bytes([122]) + b"foo")) + written(1)
    write("connection", register)
    write("connection", register + lookup)
    write("connection", register + reopen(1, 0) + receive(1, frame(bytes([110]))) + written(1))
    write("connection", register + reopen(1, 0) + receive(1, frame(bytes([100]))) + written(1))
    write("connection", register + reopen(1, 0) + receive(1, frame(bytes([107]))) + written(1))
    # Slot 2 is local and relaxed: STOP removes slot 0's registration.
    write("connection", register + receive(2, frame(bytes([115]) + b"foo")) + written(2) + lookup)
    write("connection", register + receive(2, frame(bytes([107]))) + written(2))
    # Slot 3 is not local: ALIVE2, DUMP, KILL and STOP close without a reply.
    for body in (alive2(), bytes([100]), bytes([107]), bytes([115]) + b"foo", bytes([110])):
        write("connection", receive(3, frame(body)) + written(3))
    # The same name twice, then the first goes and the second may register.
    write("connection", register + receive(1, frame(alive2())) + written(1) + terminated(0)
          + reopen(1, 0) + receive(1, frame(alive2())) + written(1))
    # Stray data on a kept registration closes it (and unregisters).
    write("connection", register + receive(0, b"x") + lookup)
    # A request split over three reads, with an export and adoption between.
    whole = frame(alive2(b"split", extra=b"\x01\x02"))
    write("connection", receive(0, whole[:1]) + adopt(0) + receive(0, whole[1:7]) + adopt(0)
          + receive(0, whole[7:]) + written(0) + adopt(0) + terminated(0))
    # Malformed frames.
    for wire in (b"\x00\x00", b"\x0b\xf2", frame(bytes([110])) + b"n", frame(alive2()[:12]),
                 frame(bytes([122]) + b"fo\x00o")):
        write("connection", receive(0, wire) + written(0))
    # A remote, non-relaxed reopened slot 0.
    write("connection", reopen(0, 3) + receive(0, frame(alive2(b"r"))) + written(0))


def request(flags, path, query=b"", if_none_match=b"", last_event_id=b"", accept=b"", name=b"foo"):
    return bytes([flags]) + b"\n".join([name, path, query, if_none_match, last_event_id, accept])


GET, HEAD, POST, PUT, DELETE, OPTIONS, LOWER = (m << 1 for m in range(7))
THREE_NODES = 2 << 4
NOT_READY = 1


def router_seeds():
    for path in (b"/", b"/livez", b"/readyz", b"/version", b"/metrics", b"/openapi.json", b"/openapi.yaml",
                 b"/v1/nodes", b"/v1/nodes/foo", b"/v1/nodes/foo/health", b"/v1/nodes/node1",
                 b"/v1/nodes/missing", b"/v1/nodes/missing/health", b"/v1/events", b"/v1/events/history",
                 b"/nope", b"/v1/nodes/", b"/v1/nodes//health", b"/v1/nodes/%66oo", b"/v1/nodes/%2F",
                 b"/v1/nodes/%zz", b"/v1/nodes/%C3%A9", b"/v1/nodes/%FF", b"//", b"/v1//nodes", b""):
        write("router", request(GET | THREE_NODES, path))
    for method in (HEAD, POST, PUT, DELETE, OPTIONS, LOWER):
        write("router", request(method, b"/v1/nodes"))
    write("router", request(GET | NOT_READY, b"/readyz"))
    write("router", request(GET | NOT_READY, b"/readyz", b"verbose"))
    write("router", request(GET, b"/readyz", b"verbose=1"))
    for query in (b"type=normal", b"type=hidden", b"type=77", b"type=077", b"type=255", b"type=256",
                  b"type=-1", b"type=+7", b"type=", b"type=%37%37", b"index=0", b"index=1&wait=1",
                  b"index=1795423231661335&wait=30", b"index=18446744073709551615&wait=3600",
                  b"index=18446744073709551616", b"index=-1", b"wait=0", b"wait=1e3", b"index=1&wait=x",
                  b"index=%31&wait=%31", b"index=&wait="):
        write("router", request(GET | THREE_NODES, b"/v1/nodes", query))
    write("router", request(GET | THREE_NODES, b"/v1/nodes", if_none_match=b'"3"'))
    write("router", request(GET | THREE_NODES, b"/v1/nodes", if_none_match=b'"4"'))
    write("router", request(GET | THREE_NODES, b"/v1/nodes", b"type=normal", if_none_match=b'"4"'))
    write("router", request(GET | THREE_NODES, b"/v1/nodes/foo", if_none_match=b'"1"'))
    write("router", request(GET | THREE_NODES, b"/v1/nodes", if_none_match=b"*"))
    for query, last in ((b"", b""), (b"", b"0"), (b"", b"2"), (b"", b"42"), (b"", b"x"),
                        (b"", b"18446744073709551615"), (b"lastEventId=1", b""), (b"follow=false", b""),
                        (b"follow=false", b"1"), (b"follow=maybe", b""), (b"follow=true&lastEventId=3", b"")):
        write("router", request(GET | THREE_NODES, b"/v1/events", query, last_event_id=last,
                                accept=b"text/event-stream"))
    write("router", request(HEAD | THREE_NODES, b"/v1/events"))
    # Names that need escaping in JSON, SSE and HTML.
    for name in (b'a"b', b"a\\b", b"a\nb", b"a\rb", b"<script>", "\u00e9t\u00e9".encode(), b"\x7f", b"\xff",
                 b"a" * 255, b"\x01\x1f", "\u2028".encode()):
        write("router", request(GET | THREE_NODES, b"/v1/nodes", name=name))
        write("router", request(GET | THREE_NODES, b"/v1/events", name=name))
        write("router", request(GET, b"/v1/events/history", name=name))


frame_seeds()
connection_seeds()
router_seeds()
