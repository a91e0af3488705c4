"""The OpenAPI document: every operation's error answers, and how to authenticate.

FastAPI documents only what a route declares, and its default 422 body (`detail: [...]`)
is not the one we send. Rather than ask every route module to repeat the same
`responses=`, `install(app)` derives them from the route itself when the document is
built: a route behind `auth.require(scope)` can answer 401, 403 and 429 and is marked
with the bearer / X-API-Key security schemes and its scope; one with path parameters
404; one with parameters or a body 422; one with a body 413 and 415. Each of those
answers is the one `ErrorBody` (errors.py). Routes added later get all of this for free,
and the schemathesis test checks the result against the running server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carrier_cli.clients.api.errors import ERROR_DESCRIPTIONS, ErrorBody

if TYPE_CHECKING:
    from fastapi import FastAPI

SCOPE_ATTRIBUTE = "carrier_scope"  # set by auth.require on its dependency function
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def api_routes(app: Any) -> list[Any]:
    """Every FastAPI route of the app, flattened: FastAPI 0.16x keeps an included router
    as one nested entry of `app.routes`, so walking that list misses its routes. Each
    item has `path_format`, `methods`, `dependant`, `body_field`, `include_in_schema`."""
    from fastapi.routing import APIRoute

    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: the routes are flat
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def needed_scope(dependant: Any) -> str | None:
    """The scope a route's dependencies require (auth.require marks its function)."""
    call = getattr(dependant, "call", None)
    scope = getattr(call, SCOPE_ATTRIBUTE, None)
    if isinstance(scope, str):
        return scope
    for child in getattr(dependant, "dependencies", []):
        found = needed_scope(child)
        if found:
            return found
    return None


def error_codes(route: Any) -> set[int]:
    """The error statuses this route can answer with, from what it declares."""
    dependant = route.dependant
    codes: set[int] = set()
    if needed_scope(dependant):
        codes |= {401, 403, 429}
    if dependant.path_params:
        codes.add(404)
    has_body = route.body_field is not None
    if has_body or dependant.query_params or dependant.path_params or dependant.header_params:
        codes.add(422)
    if has_body:  # 400: a body that is not even text (FastAPI cannot decode it)
        codes |= {400, 413, 415}
    return codes


def _error_response(code: int, existing: dict[str, Any] | None) -> dict[str, Any]:
    response = dict(existing or {})
    response.setdefault("description", ERROR_DESCRIPTIONS.get(code, "Error"))
    content = response.get("content") or {}
    schema = content.get("application/json", {}).get("schema")
    if code == 422 or not schema:  # FastAPI's own 422 body is not ours
        response["content"] = {"application/json": {"schema": _ERROR_REF}}
    if code == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
        }
    return response


def _add_schemas(components: dict[str, Any]) -> None:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = components.setdefault("schemas", {})
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas["ErrorBody"] = schema
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install(app: FastAPI) -> None:
    """Replace app.openapi with one that documents errors and security (built once)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = document.setdefault("components", {})
        _add_schemas(components)
        components["securitySchemes"] = SECURITY_SCHEMES
        for route in api_routes(app):
            if not route.include_in_schema:
                continue
            scope = needed_scope(route.dependant)
            for method in route.methods or ():
                operation = document["paths"].get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for code in sorted(error_codes(route) | _declared_errors(responses)):
                    responses[str(code)] = _error_response(code, responses.get(str(code)))
                if scope:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    operation["x-required-scope"] = scope
                    note = f"Needs an API key with scope `{scope}` (or a wider one)."
                    description = operation.get("description")
                    operation["description"] = f"{description}\n\n{note}" if description else note
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declared_errors(responses: dict[str, Any]) -> set[int]:
    return {int(code) for code in responses if code.isdigit() and int(code) >= 400}
