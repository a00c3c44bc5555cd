"""Test helper: a real S3-protocol server (moto in server mode) on 127.0.0.1.

Prints its port, then serves until its stdin closes (the test process that
started it exited), and exits. Each test makes its own bucket.
"""
import socket
import sys

from moto.server import ThreadedMotoServer

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop()
