"""The benchmark suite: ratelimit_core against its Python peers and the raw Redis floor.

Run it from a source checkout with ``python -m benchmarks`` (``--quick`` for a
run under a minute). It measures, in one process run:

- the primitives (bucket, counter, set) on memory, fakeredis and a real
  redis-server it starts itself, single key and 10,000 keys, allowed and denied;
- the peers installed beside it: `limits` (memory and Redis; fixed, moving and
  sliding windows) and `pyrate-limiter` (memory);
- the raw floor: redis-py EVALSHA of a one-key script, one call per check;
- one caller and 50 concurrent callers on one event loop;
- the Channels middleware's cost per frame and per connect;
- the memory backend's bytes per idle key, and that expired keys are reclaimed.

Each figure is the median of several runs; ratios compare figures of the same
run. It prints a table and writes JSON and a PNG chart to ``benchmarks/results/``.

``python -m benchmarks load`` runs the end-to-end load suite (`benchmarks.load`:
real server, Redis and client processes) and ``python -m benchmarks sizing``
the capacity model built on its figures (`benchmarks.sizing`).
"""
