"""Operation tables: one list per group of handlers that both registers the aiohttp routes and describes them.

A group of handlers is a class whose constructor takes what the handlers need (stores, clients, limits); the
frame builds one object of it when the service starts and provides it to the table (`table.provide(app, obj)`).
Each operation names one of the class's methods. What the operation reads and answers comes from the method's
annotations, the only place it is written: `body: Body[BotSettings]` is the request body, `query: Query[...]` the
query string, the return annotation the answer (a model: JSON with the operation's status; `Reply[Model]`: JSON
with a status chosen per call among the documented ones; `None`: no content; a `web.StreamResponse`: written by
the handler, documented by hand with `answers`). The OpenAPI document (api/openapi.py) is built from the tables.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin, get_type_hints

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel

from api.bodies import input_kind

H = TypeVar("H")
M = TypeVar("M", bound=BaseModel)

# Security schemes of the document (api/openapi.py). An operation lists the alternatives it accepts; none: public.
Scheme = Literal["bearerJwt", "apiKey", "metaSignature"]
JWT: tuple[Scheme, ...] = ("bearerJwt",)
API_KEY: tuple[Scheme, ...] = ("apiKey",)
META_SIGNATURE: tuple[Scheme, ...] = ("metaSignature",)
PUBLIC: tuple[Scheme, ...] = ()

_DEFAULT_DESCRIPTIONS = {200: "OK", 201: "Created", 204: "No content"}
_PARAM = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True, slots=True)
class Reply(Generic[M]):
    """A JSON answer whose status the handler picks among the operation's documented success statuses."""

    body: M
    status: int


@dataclass(frozen=True, slots=True)
class Answer:
    """A documented answer that is not one of the operation's models (text, CSV, a stream, a redirect)."""

    description: str
    content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # content type -> JSON schema
    headers: Mapping[str, str] = field(default_factory=dict)  # header name -> description
    model: type[BaseModel] | None = None  # a JSON answer with this model (for example readiness' 503)


@dataclass(frozen=True, slots=True)
class Input:
    kind: Literal["body", "query", "form"]
    model: type[BaseModel]
    required: bool
    wrapper: type[Any]  # Body, OptionalBody, Query or Form: built per request and handed to the handler


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # relative to the surface's prefix
    function: Callable[..., Awaitable[Any]]
    operation_id: str
    summary: str
    description: str | None
    tag: str
    security: tuple[Scheme, ...]
    inputs: tuple[Input, ...]
    response: type[BaseModel] | None  # the JSON model of the success answers, if they are JSON
    success: Mapping[int, str]  # status -> description, for the success answers
    answers: Mapping[int, Answer]  # answers documented by hand (raw successes, or a model other than Error)
    errors: tuple[int, ...]  # error statuses the envelope may carry, beyond the ones the security implies
    parameters: Mapping[str, str]  # path and header parameter descriptions
    request_content: str | None  # a raw request body's content type (webhooks read signed bytes themselves)

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)

    def input(self, kind: str) -> Input | None:
        return next((i for i in self.inputs if i.kind == kind), None)

    async def invoke(self, handlers: object, request: web.Request) -> web.StreamResponse:
        args = [i.wrapper(request, i.model) for i in self.inputs]
        result = await self.function(handlers, request, *args)
        return self.render(result)

    def render(self, result: object) -> web.StreamResponse:
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=_only(self.success))
        status = _only(self.success)
        if isinstance(result, Reply):
            status, result = result.status, result.body
            if status not in self.success and (status not in self.answers or self.answers[status].model is None):
                raise TypeError(f"{self.operation_id} answered {status}, which its table does not document")
        if self.response is None or not isinstance(result, self.response):
            raise TypeError(f"{self.operation_id} answered {type(result).__name__}, not its documented model")
        # json.dumps' own format (", " and ": ", non-ASCII escaped), byte for byte what clients have always read.
        return web.json_response(result.model_dump(mode="json"), status=status)


class OperationTable(Generic[H]):
    """The operations of one handler class, with the defaults they share (tag, security, error statuses)."""

    def __init__(
        self,
        handlers: type[H],
        *,
        tag: str,
        security: tuple[Scheme, ...] = PUBLIC,
        errors: Sequence[int] = (),
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.handlers = handlers
        self.key: web.AppKey[H] = web.AppKey(f"{handlers.__module__}.{handlers.__qualname__}", handlers)
        self.tag = tag
        self.security = security
        self.errors = tuple(errors)
        self.parameters = dict(parameters or {})
        self.operations: list[Operation] = []

    def provide(self, app: web.Application, handlers: H) -> None:
        """Hand the started service's handler object to this table's routes."""
        app[self.key] = handlers

    def get(self, path: str, function: Callable[..., Awaitable[Any]], **options: Any) -> Operation:
        return self.add("GET", path, function, **options)

    def post(self, path: str, function: Callable[..., Awaitable[Any]], **options: Any) -> Operation:
        return self.add("POST", path, function, **options)

    def put(self, path: str, function: Callable[..., Awaitable[Any]], **options: Any) -> Operation:
        return self.add("PUT", path, function, **options)

    def patch(self, path: str, function: Callable[..., Awaitable[Any]], **options: Any) -> Operation:
        return self.add("PATCH", path, function, **options)

    def delete(self, path: str, function: Callable[..., Awaitable[Any]], **options: Any) -> Operation:
        return self.add("DELETE", path, function, **options)

    def add(
        self,
        method: str,
        path: str,
        function: Callable[..., Awaitable[Any]],
        *,
        summary: str,
        description: str | None = None,
        status: int | None = None,
        success: Mapping[int, str] | None = None,
        answers: Mapping[int, Answer] | None = None,
        errors: Sequence[int] = (),
        security: tuple[Scheme, ...] | None = None,
        operation_id: str | None = None,
        parameters: Mapping[str, str] | None = None,
        request_content: str | None = None,
    ) -> Operation:
        inputs, response, returns_none, raw = _signature(function)
        answers = dict(answers or {})
        if success is None:
            chosen = status or (204 if returns_none else 201 if method == "POST" and response is not None else 200)
            success = {chosen: _DEFAULT_DESCRIPTIONS.get(chosen, "OK")}
        if raw and not any(code in answers for code in range(200, 300)):
            raise TypeError(f"{function.__qualname__} writes its own answer: document it with answers={{...}}")
        operation = Operation(
            method=method,
            path=path,
            function=function,
            operation_id=operation_id or _camel(function.__name__),
            summary=summary,
            description=description,
            tag=self.tag,
            security=self.security if security is None else security,
            inputs=inputs,
            response=response,
            success=dict(success) if not raw else {},
            answers=answers,
            errors=tuple(sorted({*self.errors, *errors})),
            parameters={**self.parameters, **(parameters or {})},
            request_content=request_content,
        )
        self.operations.append(operation)
        return operation

    def register(self, router: web.UrlDispatcher, prefix: str = "", middlewares: Sequence[Middleware] = ()) -> None:
        for operation in self.operations:
            handler = self._route(operation, middlewares)
            if operation.method == "GET":  # answers HEAD too, as uptime monitors and load balancers ask
                router.add_get(prefix + operation.path, handler)
            else:
                router.add_route(operation.method, prefix + operation.path, handler)

    def _route(
        self, operation: Operation, middlewares: Sequence[Middleware]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        key = self.key

        async def handle(request: web.Request) -> web.StreamResponse:
            return await operation.invoke(request.config_dict[key], request)

        # The audit trail names the action after the route's handler: the method's own name.
        functools.update_wrapper(handle, operation.function)
        route: Callable[[web.Request], Awaitable[web.StreamResponse]] = handle
        for middleware in reversed(middlewares):  # the first middleware runs first, as in an application
            route = functools.update_wrapper(functools.partial(middleware, handler=route), operation.function)
        return route


@dataclass(frozen=True, slots=True)
class Surface:
    """One API surface: its operation tables, mounted under a prefix, with its own middlewares if any.

    A surface with middlewares (the JWT surfaces) is an aiohttp sub-application, so its middlewares never run for
    another surface's routes; one without is added to the main application's router. `wrap_routes` adds a
    surface's routes to the main router with its middlewares around each route's handler, for a surface that
    shares its prefix with nothing and wants unknown paths and methods answered as everywhere else.
    """

    name: str
    tables: tuple[OperationTable[Any], ...]
    prefix: str = ""
    middlewares: tuple[Middleware, ...] = ()
    wrap_routes: bool = False

    def mount(self, app: web.Application) -> None:
        if not self.middlewares or self.wrap_routes:
            for table in self.tables:
                table.register(app.router, self.prefix, self.middlewares)
            return
        sub = web.Application(middlewares=self.middlewares)
        for table in self.tables:
            table.register(sub.router)
        app.add_subapp(self.prefix + "/", sub)

    def operations(self) -> Iterator[tuple[str, Operation]]:
        """Each operation with its full path as served."""
        for table in self.tables:
            for operation in table.operations:
                yield self.prefix + operation.path, operation


def check_provided(app: web.Application, surfaces: Sequence[Surface]) -> None:
    """Every table's handler object was provided: a missing one fails at start-up, not on a request."""
    missing = [t.handlers.__qualname__ for s in surfaces for t in s.tables if t.key not in app]
    if missing:
        raise RuntimeError(f"handlers never provided to their operation tables: {', '.join(missing)}")


def _signature(
    function: Callable[..., Awaitable[Any]],
) -> tuple[tuple[Input, ...], type[BaseModel] | None, bool, bool]:
    """(inputs, response model, answers nothing, writes its own answer) from the method's annotations."""
    hints = get_type_hints(function)
    names = list(inspect.signature(function).parameters)
    if names[:2] != ["self", "request"]:
        raise TypeError(f"{function.__qualname__} must take (self, request, ...)")
    inputs = []
    for name in names[2:]:
        found = input_kind(hints.get(name))
        if found is None:
            raise TypeError(f"{function.__qualname__}: parameter {name} is not a Body, Query or Form")
        kind, model, required = found
        inputs.append(Input(kind, model, required, get_origin(hints[name]) or hints[name]))
    returned = hints.get("return")
    if returned is None or returned is type(None):
        return tuple(inputs), None, True, False
    if get_origin(returned) is Reply:
        return tuple(inputs), get_args(returned)[0], False, False
    if isinstance(returned, type) and issubclass(returned, BaseModel):
        return tuple(inputs), returned, False, False
    if isinstance(returned, type) and issubclass(returned, web.StreamResponse):
        return tuple(inputs), None, False, True
    raise TypeError(f"{function.__qualname__} must return a model, Reply[model], None or a web.StreamResponse")


def _only(success: Mapping[int, str]) -> int:
    return next(iter(success))


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)
