#!/usr/bin/env python3
"""User-space instructions per request of a whole agent process.

Each agent runs under `valgrind --tool=callgrind` on a unix socket
(qemu-ga's `-m unix-listen`); one client connection sends N requests back
to back (pipelined) and reads every answer. The figure is the difference
between the process's total instructions with N requests and with N/10
requests, divided by the difference in requests, so start-up, connection
and exit cost drop out.

Usage: instructions.py AGENT [AGENT ...]   (each a path to guest-agent or
qemu-ga; a label may be given as LABEL=PATH). Prints one line per agent
and request kind. Instruction counts do not depend on the machine's load.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REQUESTS = {
    "guest-sync-delimited": b'{"execute": "guest-sync-delimited", "arguments": {"id": 123456789}}\n',
    "guest-ping": b'{"execute": "guest-ping"}\n',
}


def run(agent, request, count, workdir):
    """Total instructions of one agent process that answers `count` requests."""
    sock = os.path.join(workdir, "qga.sock")
    out = os.path.join(workdir, "callgrind.out")
    for path in (sock, out, out + ".1"):
        if os.path.exists(path):
            os.unlink(path)
    args = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
        agent, "-m", "unix-listen", "-p", sock, "-t", workdir,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not os.path.exists(sock):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{agent} did not create {sock}")
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(sock)
            conn.settimeout(600)
            # Send from a thread: the agent answers while it reads, and
            # would block on a full socket if nobody read the answers.
            sender = threading.Thread(target=conn.sendall, args=(request * count,))
            sender.start()
            lines = 0
            pending = b""
            while lines < count:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    raise RuntimeError(f"{agent} closed after {lines} answers")
                pending += chunk
                lines += pending.count(b"\n")
                pending = pending[pending.rfind(b"\n") + 1:]
            sender.join()
        # Dump the counts now, so that the exit (which qemu-ga 7.2 does not
        # always complete) is not part of the figure.
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], stderr=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, check=True, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with open(out + ".1") as f:
        text = f.read()
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if not match:
        raise RuntimeError(f"no instruction total in {out}.1")
    return int(match.group(1))


def main():
    agents = sys.argv[1:]
    if not agents:
        sys.exit(__doc__)
    count = int(os.environ.get("QGA_INSTR_REQUESTS", "20000"))
    small = count // 10
    for spec in agents:
        label, _, path = spec.rpartition("=")
        label = label or os.path.basename(path)
        for name, request in REQUESTS.items():
            with tempfile.TemporaryDirectory() as workdir:
                few = run(path, request, small, workdir)
                many = run(path, request, count, workdir)
            per = (many - few) / (count - small)
            print(f"{label:<24} {name:<22} {per:9.0f} instructions/request")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
