"""Network guard for the ollama-herd agent under test (`tests/ollama_herd_interop.rs`).

The test puts this folder on PYTHONPATH, so Python imports this module at start-up, before the
agent's own code. It keeps the agent on this machine: a socket `connect`, `connect_ex` or
`sendto` to any address outside the loopback range is refused with `OSError`, and a name lookup
for anything but a loopback name or literal is refused too. Each refusal is written to stderr as
one line starting with `herd-interop-guard: refused`, which the test reads and reports.

The one refusal the test expects is ollama-herd's LAN-address probe (`get_local_ip`: a UDP
`connect` to 10.255.255.255 port 1, which sends no packet). Refusing it makes the agent fall back
to 127.0.0.1, so it neither starts its LAN proxy on the machine's own interface address nor
advertises that address to the router.
"""

import ipaddress
import socket
import sys

_MARK = "herd-interop-guard: refused"


def _is_local_host(host):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:
        return True
    host = str(host).strip("[]").split("%")[0]
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped is not None and mapped.is_loopback


def _is_local_addr(address):
    # AF_UNIX paths and other non-tuple addresses never leave the machine.
    if not isinstance(address, tuple) or not address:
        return True
    return _is_local_host(address[0])


def _refuse(what, detail):
    try:
        sys.stderr.write(f"{_MARK} {what} {detail!r}\n")
        sys.stderr.flush()
    except Exception:
        pass
    raise OSError(f"herd interop test: off-host {what} to {detail!r} refused")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if not _is_local_addr(address):
        _refuse(f"connect(type={int(self.type)})", address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local_addr(address):
        _refuse(f"connect_ex(type={int(self.type)})", address)
    return _connect_ex(self, address)


def _guarded_sendto(self, data, *args):
    if args and not _is_local_addr(args[-1]):
        _refuse(f"sendto(type={int(self.type)})", args[-1])
    return _sendto(self, data, *args)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_local_host(host):
        _refuse("getaddrinfo", host)
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.socket.sendto = _guarded_sendto
socket.getaddrinfo = _guarded_getaddrinfo
