"""The peer of `exp run` in the benchmark: a plain Python asyncio client (aiohttp + a semaphore),
sending the very request bodies `exp run` built (its inputs/ files), C at a time, keeping every
answer in memory. Prints one JSON line: requests, errors, seconds, rps.

    python3 py_client.py --url http://127.0.0.1:PORT/v1/chat/completions --concurrency 64 FILE...
"""
import argparse
import asyncio
import json
import time

import aiohttp


async def main(url, concurrency, files):
    bodies = []
    for f in files:
        with open(f) as fh:
            for line in fh:
                bodies.append(json.dumps(json.loads(line)["body"]))
    sem = asyncio.Semaphore(concurrency)
    results = []
    errors = 0

    async def one(session, body):
        nonlocal errors
        async with sem:
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    data = await r.json()
                    results.append((data["choices"][0]["message"]["content"], data["usage"]))
            except Exception:  # counted, like exp's recorded failures
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(one(session, b) for b in bodies))
        seconds = time.perf_counter() - start
    print(json.dumps({"requests": len(bodies), "errors": errors, "seconds": seconds,
                      "rps": len(bodies) / seconds}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    asyncio.run(main(a.url, a.concurrency, a.files))
