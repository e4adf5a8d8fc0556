"""The end-to-end load suite: ``python -m benchmarks load [--quick] [--sockets N]``.

Real processes on loopback: app servers (uvicorn, daphne for the restart
scenarios) serving a small Channels echo consumer (`echo_app`) with the
middleware off, on ``memory://`` and on the default stack (a Redis URL, the
fallback on); one redis-server; WebSocket clients (the `websockets` library) in
separate worker processes (`clients`). `rounds` measures throughput, latency,
connect rate, idle Redis traffic and memory, the three subjects in turn, round
after round; `restarts` the graceful restart (SIGTERM) and the crash (SIGKILL)
of one of two processes; `sizing` turns the figures into a capacity model.
"""
