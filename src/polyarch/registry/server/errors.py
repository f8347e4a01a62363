"""Distribution-spec error codes and the one exception the request handlers raise.

Every client error leaves the server as a 4xx with a JSON body ``{"errors": [{"code", "message", "detail"}]}``;
anything unexpected becomes 500 ``UNKNOWN`` with no internal path or exception text in the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

__all__ = ["ApiError", "error_response"]

# code -> default HTTP status (the spec's table; the caller may override the status)
CODES: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "TAG_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "PAGINATION_NUMBER_INVALID": 400,
    "RANGE_INVALID": 416,
    "UNKNOWN": 500,
}


class ApiError(Exception):
    """An error answer: spec ``code``, HTTP ``status``, a message for humans and extra response headers."""

    def __init__(self, code: str, message: str, *, status: int | None = None, detail: Any = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else CODES.get(code, 400)
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self, *, head: bool = False) -> Response:
        return error_response(self.status, self.code, self.message, self.detail, self.headers, head=head)


def error_response(status: int, code: str, message: str, detail: Any = None,
                   headers: Mapping[str, str] | None = None, *, head: bool = False) -> Response:
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    body = json.dumps({"errors": [entry]}).encode()
    hdrs = {"Docker-Distribution-API-Version": "registry/2.0", **(headers or {})}
    if head:
        # A HEAD answer carries no body; its length would describe the JSON a GET would get.
        return Response(status_code=status, headers=hdrs, media_type="application/json")
    return Response(body, status_code=status, headers=hdrs, media_type="application/json")
