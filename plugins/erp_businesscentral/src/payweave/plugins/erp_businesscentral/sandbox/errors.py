"""BC error responses: ``{"error": {"code": ..., "message": "<text>  CorrelationId:  <guid>."}}``."""
from __future__ import annotations

import uuid

from .. import bcjson


class BCApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, correlation_id: str | None = None) -> bytes:
        cid = correlation_id or str(uuid.uuid4())
        text = self.message.rstrip()
        return bcjson.dumps({"error": {"code": self.code, "message": f"{text}  CorrelationId:  {cid}."}}).encode()


def not_found_route(uri: str) -> BCApiError:
    return BCApiError(404, "BadRequest_NotFound", f"No HTTP resource was found that matches the request URI '{uri}'.")


def resource_not_found(segment: str) -> BCApiError:
    return BCApiError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{segment}'.")


def dialog(message: str) -> BCApiError:
    """An AL ``Error()`` business-rule failure."""
    return BCApiError(400, "Application_DialogException", message)


def bad_request(message: str) -> BCApiError:
    return BCApiError(400, "BadRequest", message)


def read_only(field: str) -> BCApiError:
    return BCApiError(400, "BadRequest_InvalidOperation", f"Control '{field}' is read-only.")


def method_not_allowed(method: str) -> BCApiError:
    return BCApiError(405, "BadRequest_MethodNotAllowed", f"'{method}' requests for this resource are not supported.")


MISSING_ETAG = BCApiError(
    400, "BadRequest_InvalidToken",
    "Could not validate the client concurrency token required by the service. "
    "Please provide a valid token in the client request.",
)


def entity_changed(status: int) -> BCApiError:
    return BCApiError(status, "Request_EntityChanged", "Another user has already changed the record.")


def invalid_credentials(message: str = "The server has rejected the client credentials.") -> BCApiError:
    return BCApiError(
        401, "Authentication_InvalidCredentials", message,
        headers={"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'},
    )
