import asyncio

from ratelimit_core import backend_from_url


async def main() -> None:
    async with backend_from_url("memory://") as limiter:  # or "redis://127.0.0.1:6379/0"
        for _ in range(4):
            result = await limiter.bucket_consume("user:42", rate=1, burst=3)
            print(result.allowed, result.remaining, result.retry_after_ms)
        seat = await limiter.set_add("room:7", "conn-a", capacity=10, lease_ms=60_000)
        print(seat.added, seat.size)


asyncio.run(main())
