#!/usr/bin/env python3
"""Open N SMTP sessions to HOST:PORT, say EHLO on each, and hold them.

Prints "ready N" once every session has its EHLO reply, then waits for a
line on standard input (or SIGTERM) before closing them. Used by
scripts/bench-idle; loopback only.
"""
import asyncio
import resource
import sys


async def session(host, port, sem, held):
    async with sem:
        reader, writer = await asyncio.open_connection(host, port)
        line = await reader.readline()
        if not line.startswith(b"220"):
            raise RuntimeError(f"greeting: {line!r}")
        writer.write(b"EHLO idle.example\r\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                raise RuntimeError("closed during EHLO")
            if line[3:4] == b" ":
                break
    held.append(writer)


async def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, count + 1024), max(hard, count + 1024)))
    held = []
    sem = asyncio.Semaphore(500)  # connect at a pace the backlog can take
    results = await asyncio.gather(
        *(session(host, port, sem, held) for _ in range(count)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, Exception)]
    print(f"ready {len(held)} failed {len(failed)}", flush=True)
    if failed:
        print(f"first failure: {failed[0]!r}", file=sys.stderr, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in held:
        w.close()


asyncio.run(main())
