"""Operation tables (api/operations.py): what a handler reads and answers is read from its annotations, so the
document cannot describe something else, and the mistakes a new route could make fail when the table is built or
the service starts, not on a customer's request."""

from __future__ import annotations

import pytest
from aiohttp import web

from api.bodies import Body, Query
from api.operations import JWT, OperationTable, Reply, Surface, check_provided
from api.pagination import PageQuery
from api.shapes import ApiModel


class Thing(ApiModel):
    name: str


class Other(ApiModel):
    size: int


class Things:
    async def make(self, request: web.Request, body: Body[Thing]) -> Thing:
        return await body.parse()

    async def listing(self, request: web.Request, query: Query[PageQuery]) -> Reply[Thing]:
        return Reply(Thing(name="x"), 200)

    async def raw(self, request: web.Request) -> web.Response:
        return web.Response(text="hi")

    async def untyped(self, request: web.Request, body: dict) -> Thing:  # type: ignore[type-arg]
        return Thing(name="x")


def test_the_body_query_and_answer_come_from_the_handlers_annotations() -> None:
    table = OperationTable(Things, tag="t", security=JWT)
    made = table.post("/things", Things.make, summary="make")
    listed = table.get("/things", Things.listing, summary="list", success={200: "OK", 202: "later"})
    assert [(i.kind, i.model, i.required) for i in made.inputs] == [("body", Thing, True)]
    assert made.response is Thing and dict(made.success) == {201: "Created"}  # a POST answering a model creates
    assert [(i.kind, i.model) for i in listed.inputs] == [("query", PageQuery)]
    assert listed.operation_id == "listing" and made.operation_id == "make"


def test_an_answer_other_than_the_documented_one_is_refused() -> None:
    table = OperationTable(Things, tag="t")
    made = table.post("/things", Things.make, summary="make")
    listed = table.get("/things", Things.listing, summary="list")
    assert made.render(Thing(name="ok")).status == 201
    with pytest.raises(TypeError, match="not its documented model"):
        made.render(Other(size=1))
    with pytest.raises(TypeError, match="does not document"):
        listed.render(Reply(Thing(name="x"), 202))


def test_mistakes_in_a_table_fail_when_it_is_built() -> None:
    table = OperationTable(Things, tag="t")
    with pytest.raises(TypeError, match="document it with answers"):
        table.get("/raw", Things.raw, summary="raw")
    with pytest.raises(TypeError, match="not a Body, Query or Form"):
        table.post("/untyped", Things.untyped, summary="untyped")


def test_a_table_whose_handlers_were_never_provided_stops_the_start() -> None:
    table = OperationTable(Things, tag="t")
    table.post("/things", Things.make, summary="make")
    surface = Surface("things", (table,))
    app = web.Application()
    surface.mount(app)
    with pytest.raises(RuntimeError, match="Things"):
        check_provided(app, [surface])
    table.provide(app, Things())
    check_provided(app, [surface])
