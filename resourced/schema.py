"""What the OpenAPI schema (/api/schema/, /api/docs/) says beyond what drf-spectacular finds itself.

* `examples_on_fields`, a postprocessing hook: every property of a request body gets the value the
  operation's examples (taken from the seeds) give it, so that the schema's models and Swagger's
  example body show real values, not "string".
* `error_response`: an error answer in its endpoint's JSON shape, with the body the endpoint
  really sends as the example.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from resourced.errors import ErrorFamily

REF_PREFIX = "#/components/schemas/"


def examples_on_fields(result, generator, request, public):
    """Copy each request example's field values onto the properties of the request body's schema
    (the first example that has a field wins); a property that has an example keeps it."""
    schemas = result.get("components", {}).get("schemas", {})
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = media.get("schema", {})
                ref = schema.get("$ref", "")
                if ref.startswith(REF_PREFIX):
                    schema = schemas.get(ref[len(REF_PREFIX):], {})
                properties = schema.get("properties", {})
                for example in media.get("examples", {}).values():
                    value = example.get("value")
                    if not isinstance(value, dict):
                        continue
                    for name, prop in properties.items():
                        if name in value and "example" not in prop:
                            if "$ref" in prop:  # siblings of a $ref are ignored: wrap it
                                prop["allOf"] = [{"$ref": prop.pop("$ref")}]
                            prop["example"] = value[name]
    return result


def error_response(serializer, family: ErrorFamily, kind: str, description: str, *messages: str,
                   extra: dict | None = None) -> OpenApiResponse:
    """An error answer of an endpoint: `serializer` is its shape, each message an example body."""
    return OpenApiResponse(
        serializer,
        description=description,
        examples=[
            OpenApiExample(f"{kind} {index}", summary=message, value=family.body(kind, message, extra),
                           response_only=True)
            for index, message in enumerate(messages, 1)
        ],
    )
