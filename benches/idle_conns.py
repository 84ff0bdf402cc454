#!/usr/bin/env python3
"""Open N keep-alive connections to a server on 127.0.0.1, send one request on each,
read its whole answer, then hold every connection open and idle.

  idle_conns.py PORT N PATH [COOKIE]

Prints one line "held N ok=K other=M failed=F" once every connection has had its answer,
then keeps the connections until stdin reaches end of file (or the process is killed).
Used by benches/load.sh to measure a server's resident memory per idle connection.
"""
import asyncio
import resource
import sys


async def one(port, request, gate, held, tally):
    async with gate:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            tally["failed"] += 1
            tally.setdefault("first_error", repr(e))
            return
    tally["ok" if status == b"200" else "other"] += 1
    held.append(writer)


async def main():
    port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cookie = sys.argv[4] if len(sys.argv) > 4 else ""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()
    gate = asyncio.Semaphore(200)  # connections being opened at once
    held, tally = [], {"ok": 0, "other": 0, "failed": 0}
    await asyncio.gather(*(one(port, request, gate, held, tally) for _ in range(n)))
    print(f"held {len(held)} ok={tally['ok']} other={tally['other']} failed={tally['failed']}"
          + (f" first_error={tally['first_error']}" if "first_error" in tally else ""), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
