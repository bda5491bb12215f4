# Echo server for the idle-connection suite (tests/tests/idle.rs) and hack/bench-idle.sh:
# one thread, selectors (epoll), one fd per connection, non-blocking writes with a per-connection
# backlog. Usage: python3 idle-echo-server.py PORT STATUS
# Listens on 127.0.0.1:PORT and writes the number of open connections to STATUS (atomically,
# at most every 0.1 s) whenever it changed.
import os, resource, selectors, socket, sys, time
port, status = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(4096)
ls.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(ls, selectors.EVENT_READ, None)
pending = {}
count, written, last = 0, -1, 0.0
def publish():
    global written, last
    with open(status + ".tmp", "w") as f:
        f.write(str(count))
    os.rename(status + ".tmp", status)
    written, last = count, time.monotonic()
publish()
while True:
    for key, ev in sel.select(0.1):
        if key.data is None:
            while True:
                try:
                    c, _ = ls.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    print("server: accept:", e, file=sys.stderr)
                    break
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, True)
                count += 1
            continue
        c = key.fileobj
        if ev & selectors.EVENT_READ:
            try:
                data = c.recv(262144)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                sel.unregister(c)
                pending.pop(c, None)
                c.close()
                count -= 1
                continue
            if data:
                pending[c] = pending.get(c, b"") + data
        buf = pending.get(c, b"")
        if buf:
            try:
                n = c.send(buf)
            except (BlockingIOError, InterruptedError):
                n = 0
            buf = buf[n:]
        if buf:
            pending[c] = buf
            sel.modify(c, selectors.EVENT_READ | selectors.EVENT_WRITE, True)
        else:
            pending.pop(c, None)
            sel.modify(c, selectors.EVENT_READ, True)
    if count != written and time.monotonic() - last >= 0.1:
        publish()
