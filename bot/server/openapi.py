"""The OpenAPI 3.0 description of `unmark serve`, served at /openapi.json: PicWish's contract, written down."""

from __future__ import annotations

from typing import Any

from bot.server.storage import RESULTS_PATH
from bot.server.tasks import STATE_DETAILS, TASKS_PATH

_TASK_ID = {"type": "string", "description": "UUID v4 of the task.", "example": "2db16fc5-4fbb-43b7-b6bb-ab0c3340a5e6"}
_EPOCH = {"type": "integer", "description": "Unix time, seconds."}
_SYNC = {"type": "integer", "enum": [0, 1], "default": 0,
         "description": "0: answer with the task id at once and poll; 1: wait (up to the processing cap) and "
                        "answer with the task."}


def _envelope(data: dict[str, Any], *, message: bool) -> dict[str, Any]:
    properties = {"status": {"type": "integer", "enum": [200]}, "data": data}
    if message:
        properties["message"] = {"type": "string"}
    return {"type": "object", "required": ["status", "data"], "properties": properties}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def _oss_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/xml": {"schema": {"type": "string"}}}}


TASK = {
    "type": "object",
    "required": ["created_at", "progress", "state", "state_detail", "task_id"],
    "properties": {
        "task_id": _TASK_ID,
        "state": {"type": "integer", "enum": sorted(STATE_DETAILS),
                  "description": "1 done; 0, 2, 3, 4 still working; -1 failed, -2 result upload failed, "
                                 "-3 source download failed, -5 image too large, -7 invalid image, -8 timed out."},
        "state_detail": {"type": "string", "enum": [STATE_DETAILS[s] for s in sorted(STATE_DETAILS)]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "created_at": _EPOCH,
        "processed_at": _EPOCH,
        "completed_at": _EPOCH,
        "file": {"type": "string", "description": "The result image (same format as the input), valid for "
                                                  "one hour; present only when state is 1."},
    },
    "additionalProperties": False,
}
CREATED = {"type": "object", "required": ["task_id"], "properties": {"task_id": _TASK_ID},
           "additionalProperties": False}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "unmark: a PicWish-compatible watermark removal API",
        "version": "1.0.0",
        "description": "Self-hosted twin of PicWish's Image Watermark Removal API over unmark's local engine. "
                       "Inputs: jpg, png or bmp, 20-10000 px a side, at most 50 MB. Results keep the input's "
                       "format and are deleted one hour after the task was created.",
    },
    "security": [{"ApiKey": []}],
    "paths": {
        TASKS_PATH: {
            "post": {
                "operationId": "createTask",
                "summary": "Create a watermark-removal task from an uploaded file or a URL.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "url": {"type": "string", "description": "http(s) URL of the image."},
                                    "sync": _SYNC,
                                },
                                # Exactly one source; an empty `url` counts as absent (as with `curl -F url=`).
                                "oneOf": [
                                    {"required": ["file"]},
                                    {"required": ["url"], "properties": {"url": {"minLength": 1}}},
                                ],
                            },
                        },
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url"],
                                "properties": {
                                    "url": {"type": "string", "minLength": 1},
                                    "sync": {"oneOf": [_SYNC, {"type": "string", "enum": ["0", "1"]}]},
                                },
                            },
                        },
                    },
                },
                "responses": {
                    "200": {
                        **_json({"oneOf": [_envelope(CREATED, message=True), _envelope(TASK, message=True)]},
                                "The task id (sync=0), or the task as it stands after the wait (sync=1)."),
                        "links": {"GetTask": {"operationId": "getTask",
                                              "parameters": {"task_id": "$response.body#/data/task_id"}}},
                    },
                    "400": _error("A missing or wrong parameter."),
                    "401": _error("A missing or unknown X-API-KEY."),
                    "413": _error("The upload is larger than 50 MB."),
                    "429": _error("More requests per second than this key's QPS."),
                    "500": _error("A server-side failure."),
                },
            },
        },
        TASKS_PATH + "/{task_id}": {
            "get": {
                "operationId": "getTask",
                "summary": "A task's state, progress and, once done, its result URL.",
                "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(_envelope(TASK, message=False), "The task."),
                    "401": _error("A missing or unknown X-API-KEY."),
                    "404": _error("No such task for this key, or its hour is over."),
                    "429": _error("More requests per second than this key's QPS."),
                    "500": _error("A server-side failure."),
                },
            },
        },
        RESULTS_PATH + "/{name}": {
            "get": {
                "operationId": "getResult",
                "summary": "A result image; the URL comes signed in data.file and needs no key.",
                "security": [],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "Expires", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "Signature", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "The image.", "content": {
                        media: {"schema": {"type": "string", "format": "binary"}}
                        for media in ("image/jpeg", "image/png", "image/bmp")}},
                    "403": _oss_error("A wrong signature, or the URL's hour is over."),
                    "404": _oss_error("No such result (or already deleted)."),
                },
            },
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness, and how many tasks wait.",
                "security": [],
                "responses": {"200": _json({
                    "type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}, "queued": {"type": "integer"},
                                   "workers": {"type": "integer"}},
                }, "The server is up.")},
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            },
        },
    },
    "components": {
        "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["message", "status"],
                "properties": {"message": {"type": "string"}, "status": {"type": "integer"}},
            },
        },
    },
}
