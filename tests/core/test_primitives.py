"""The declarations in `primitives` match every implementation of `Backend`, its scripts and its resending."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

import pytest

from ratelimit_core import Backend, InvalidArgument, ManualClock, MemoryBackend
from ratelimit_core.arguments import MAX_COUNT, Count, Domain, Text
from ratelimit_core.fallback import FallbackBackend
from ratelimit_core.primitives import PRIMITIVES, REQUIRED, RESENDABLE, Primitive
from ratelimit_core.redis import RedisBackend, RedisBatch, coalesce
from ratelimit_core.redis.lua import SCRIPT_NAMES, script_source
from ratelimit_core.testing.model import ReferenceModel

IMPLEMENTATIONS = [Backend, MemoryBackend, RedisBackend, RedisBatch, FallbackBackend, ReferenceModel]
HOUSEKEEPING = {"ping", "clear", "aclose"}


def declared(primitive: Primitive) -> list[tuple[str, inspect._ParameterKind, object]]:
    kinds = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
    return [
        (p.name, kinds[p.keyword_only], inspect.Parameter.empty if p.default is REQUIRED else p.default)
        for p in primitive.parameters
    ]


def implemented(method: Callable[..., Any]) -> list[tuple[str, inspect._ParameterKind, object]]:
    self, *parameters = inspect.signature(method).parameters.values()
    assert self.name == "self"
    return [(p.name, p.kind, p.default) for p in parameters]


def test_the_primitives_are_the_protocols_methods_in_its_order() -> None:
    methods = [name for name, _ in vars(Backend).items() if inspect.iscoroutinefunction(getattr(Backend, name))]
    assert [name for name in methods if name not in HOUSEKEEPING and not name.startswith("__")] == list(PRIMITIVES)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_every_implementation_has_the_declared_signature(implementation: type, name: str) -> None:
    assert implemented(getattr(implementation, name)) == declared(PRIMITIVES[name])


@pytest.mark.parametrize("implementation", [MemoryBackend, RedisBackend, FallbackBackend], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_every_backends_primitive_is_a_coroutine_function(implementation: type, name: str) -> None:
    # A bad argument is then raised when the call is awaited, as the protocol's methods do.
    assert inspect.iscoroutinefunction(getattr(implementation, name))


def test_every_primitive_has_its_lua_script() -> None:
    assert tuple(PRIMITIVES) == SCRIPT_NAMES
    scripts = {path.name for path in files("ratelimit_core.redis").joinpath("scripts").iterdir()}
    assert {f"{name}.lua" for name in PRIMITIVES} | {"prelude.lua"} == scripts
    for name in PRIMITIVES:
        assert "KEYS[1]" in script_source(name)


PREPARE: list[tuple[str, tuple[object, ...], dict[str, object]]] = [
    ("counter_incr", ("k", 5), {}),
    ("set_add", ("k", "m"), {}),
    ("set_add", ("k", "n"), {}),
    ("bucket_consume", ("k",), {"rate": 1, "burst": 10}),
]
CALLS: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {
    "counter_incr": (("k", 2), {"limit": 100, "window_ms": 1_000}),
    "counter_decr": (("k", 2), {}),
    "counter_get": (("k",), {}),
    "set_add": (("k", "x"), {"capacity": 5, "lease_ms": 1_000}),
    "set_remove": (("k", "m"), {}),
    "set_size": (("k",), {}),
    "set_members": (("k",), {}),
    "bucket_consume": (("k",), {"rate": 1, "burst": 10}),
    "bucket_peek": (("k",), {"rate": 1, "burst": 10}),
    "bucket_reset": (("k",), {}),
}


async def _state_after(name: str, times: int) -> tuple[object, ...]:
    backend = MemoryBackend(clock=ManualClock())
    for prepare, args, kwargs in PREPARE:
        await getattr(backend, prepare)(*args, **kwargs)
    args, kwargs = CALLS[name]
    for _ in range(times):
        await getattr(backend, name)(*args, **kwargs)
    bucket = await backend.bucket_peek("k", rate=1, burst=10)
    return await backend.counter_get("k"), await backend.set_members("k"), bucket.remaining


def test_every_primitive_has_a_sample_call() -> None:
    assert set(CALLS) == set(PRIMITIVES)


async def test_resendable_are_exactly_the_primitives_that_change_nothing_when_run_twice() -> None:
    idempotent = {name for name in PRIMITIVES if await _state_after(name, 1) == await _state_after(name, 2)}
    assert idempotent == RESENDABLE
    assert coalesce.RESENDABLE is RESENDABLE


SAMPLES: list[object] = [None, 0, 1, -1, 2, True, False, 1.0, "1", b"k", "k", MAX_COUNT, MAX_COUNT + 1, [], 2**70]


class _Str(str):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize(
    "domain", [Text(), Count(), Count(0), Count(1, optional=True), Count(0, optional=True)], ids=repr
)
@pytest.mark.parametrize("value", [*SAMPLES, _Str("k"), _Int(3)], ids=repr)
def test_a_domains_inline_test_never_accepts_what_its_check_refuses(domain: Domain, value: object) -> None:
    if eval(domain.accepts("value"), {}, {"value": value}):
        assert domain.check("value", value) is value
    else:  # the full check decides, and names the argument when it refuses
        try:
            domain.check("value", value)
            refusal = None
        except InvalidArgument as exc:
            refusal = str(exc)
        assert refusal is None or refusal.startswith("value ")


def test_a_generated_check_names_the_first_bad_argument_in_declared_order() -> None:
    check = PRIMITIVES["counter_incr"].check
    check("k", 1, None, None)
    with pytest.raises(InvalidArgument, match=r"^amount\b"):
        check("k", 0, -1, 0)
    with pytest.raises(InvalidArgument, match=r"^window_ms\b"):
        check("k", 1, None, 0)
    with pytest.raises(InvalidArgument, match=r"^cost\b"):
        PRIMITIVES["bucket_consume"].check("k", 1, 2, 3)


Call = Callable[..., Awaitable[object]]


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.counter_incr("k", 1, 2),
        lambda b: b.counter_incr("k", amnt=1),
        lambda b: b.counter_get(),
        lambda b: b.bucket_consume("k", 1, 2),
        lambda b: b.bucket_consume("k", rate=1),
    ],
)
async def test_a_generated_method_binds_its_arguments_as_python_does(call: Callable[[Any], Awaitable[object]]) -> None:
    async with RedisBackend.from_url("redis://127.0.0.1:1/0", clock=ManualClock()) as unreachable:
        with pytest.raises(TypeError):
            await call(unreachable)
