"""A slow, lossy link in user space, for kernels without the netem qdisc.

``python -m tests.faults.linkrelay <veth> <tap> <delay_ms> <loss_pct>`` moves Ethernet frames between
a veth (taken off the bridge by the harness; read and written with an AF_PACKET socket) and a new tap
device (that the harness puts on the bridge in its place), each frame held ``delay_ms`` and dropped
with probability ``loss_pct`` %, in both directions. The tap disappears when this process exits, so
killing it is the whole cleanup. The harness turns checksum and segmentation offloads off on the
node's side first (a frame read from a packet socket must be complete and at most one MTU)."""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import select
import socket
import struct
import sys
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
PACKET_OUTGOING = 4
SIOCETHTOOL = 0x8946
# legacy ethtool "set" commands: tx checksum, scatter-gather, TSO, GSO, GRO
ETHTOOL_OFFLOADS_OFF = (0x17, 0x19, 0x1F, 0x24, 0x2C)


def offloads_off(ifname: str) -> None:
    """Turn checksum/segmentation offloads off on ``ifname`` (in the caller's namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for cmd in ETHTOOL_OFFLOADS_OFF:
            value = bytearray(struct.pack("II", cmd, 0))
            buf = bytearray(struct.pack("16sP", ifname.encode(), ctypes_addr(value)))
            try:
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, buf)
            except OSError:
                pass  # not every device has every offload


def ctypes_addr(buf: bytearray) -> int:
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class Pipe:
    """Frames waiting to be delivered at their due time (one direction)."""

    def __init__(self, send, delay_s: float, loss: float) -> None:
        self.send, self.delay_s, self.loss = send, delay_s, loss
        self.heap: list[tuple[float, int, bytes]] = []
        self.n = 0
        self.cv = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def put(self, frame: bytes) -> None:
        if random.random() < self.loss:
            return
        with self.cv:
            self.n += 1
            heapq.heappush(self.heap, (time.monotonic() + self.delay_s, self.n, frame))
            self.cv.notify()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cv.wait(None if not self.heap else self.heap[0][0] - time.monotonic())
                _, _, frame = heapq.heappop(self.heap)
            try:
                self.send(frame)
            except OSError:
                pass


def main() -> None:
    veth, tap, delay_ms, loss_pct = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((veth, 0))
    tap_fd = open_tap(tap)
    to_node = Pipe(sock.send, delay_ms / 1000, loss_pct / 100)
    to_bridge = Pipe(lambda f: os.write(tap_fd, f), delay_ms / 1000, loss_pct / 100)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([sock, tap_fd], [], [])
        if sock in ready:
            frame, addr = sock.recvfrom(65535)
            if addr[2] != PACKET_OUTGOING:
                to_bridge.put(frame)
        if tap_fd in ready:
            to_node.put(os.read(tap_fd, 65535))


if __name__ == "__main__":
    if sys.argv[1] == "--offloads-off":
        offloads_off(sys.argv[2])
    else:
        main()
