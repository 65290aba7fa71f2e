"""The OpenAPI schema's shared pieces: the error bodies, and the answers every view can give."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from .throttling import SUBMIT_SCOPE


class ErrorSerializer(serializers.Serializer):
    """Every API error: what went wrong, for a person."""

    detail = serializers.CharField()


class ThrottledSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="How many submissions are allowed, and when to "
                                             "try again.")
    retry_after = serializers.IntegerField(help_text="Seconds; also the Retry-After header.")


# DRF's validation errors: a list of messages per field (nested for nested fields), plus a
# "detail" that names the first one. A raw schema: additionalProperties has no serializer.
VALIDATION_ERROR = {
    "type": "object",
    "description": "The request was refused: a list of messages per field (non_field_errors "
                   "for the request as a whole) and a detail naming the first.",
    "properties": {"detail": {"type": "string", "example": "file: No file was submitted."}},
    "required": ["detail"],
    "additionalProperties": {"oneOf": [{"type": "array", "items": {"type": "string"}},
                                       {"type": "object"}]},
}


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


def invalid(description: str = "Invalid input.") -> OpenApiResponse:
    return OpenApiResponse(VALIDATION_ERROR, description=description)


class AutoSchema(SpectacularAutoSchema):
    """Adds the answers any operation may give: 401 without credentials, 404 for an object
    that is not there (or not yours), 429 for a submission over the rate."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)

        def add(code, response):
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code,
                                                              direction=direction)

        if any(not issubclass(p, AllowAny) for p in self.view.permission_classes):
            add("401", error("No valid credentials: send `Authorization: Token <key>`."))
        if "{" in self.path:
            add("404", error("Not found, or not yours."))
        elif self.method == "GET" and self._is_list_view() and self._get_paginator():
            add("404", error("No such page (`page` past the last, or not a number)."))
            add("400", error("A query parameter holds a NUL character."))
        if self.method == "POST" and getattr(self.view, "throttle_scope", None) == SUBMIT_SCOPE:
            add("429", OpenApiResponse(ThrottledSerializer,
                                       description="Too many submissions (ZOORANK_SUBMIT_RATE)."))
        return responses
