"""OpenAPI descriptions of the request bodies (parsed by hand, so declared here for /docs)."""

from __future__ import annotations

from typing import Any

_VALUE = {
    "description": 'text, a number, a category, or a media file as {"base64": "..."}',
    "oneOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "null"},
        {
            "type": "object",
            "properties": {"base64": {"type": "string", "format": "byte"}},
            "required": ["base64"],
        },
    ],
}
_ROW = {"type": "object", "additionalProperties": _VALUE, "description": "{column: value}"}

PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "one field per input column; images and audio as file "
                    "uploads, text and numbers as values",
                    "additionalProperties": {
                        "oneOf": [{"type": "string"}, {"type": "string", "format": "binary"}]
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"inputs": _ROW},
                    "required": ["inputs"],
                },
                "example": {"inputs": {"note": "alpha item 3", "x": 0.7}},
            },
        },
    }
}

PREDICT_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"rows": {"type": "array", "items": _ROW}},
                    "required": ["rows"],
                }
            }
        },
    }
}

FEEDBACK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string", "description": "from /predict"},
                        "label": {"description": "the right answer (one of the classes)"},
                        "comment": {"type": "string"},
                        "inputs": _ROW,
                    },
                    "required": ["label"],
                },
                "example": {"request_id": "0123abcd…", "label": "a", "comment": "clearly an a"},
            }
        },
    }
}
