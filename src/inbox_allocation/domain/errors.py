"""The one catalogue of failures: each class carries its HTTP status, code and headers.

Services raise these; `api.errors.as_api_error` turns every other exception into one of them
and `api.responses.render_api_error` renders them all as the error envelope. Anything else
that escapes a request is a bug and becomes `ApiError` itself, a 500 `INTERNAL_ERROR`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType


class ApiError(Exception):
    status: int = 500
    code: str = "INTERNAL_ERROR"
    message: str = "internal server error"
    # Response headers every instance carries (e.g. Retry-After on a 503); an instance may
    # add its own (the Allow of a 405, the challenge of a 401).
    headers: Mapping[str, str] = MappingProxyType({})

    def __init__(
        self,
        message: str | None = None,
        details: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = list(details)
        self.headers = {**type(self).headers, **(headers or {})}
        super().__init__(self.message)


# 400
class BadRequest(ApiError):
    status, code, message = 400, "BAD_REQUEST", "bad request"


class ValidationFailed(ApiError):
    status, code, message = 400, "VALIDATION_ERROR", "validation failed"


class UnstorableValue(BadRequest):
    # SQLSTATE class 22 (e.g. a NUL byte in text, a value out of range): bad input that
    # slipped past validation; the client's fault, never a 500.
    message = "a value in the request cannot be stored"


class TenantRequired(ApiError):
    status, code, message = 400, "TENANT_REQUIRED", "X-Tenant-ID header is required"


class OperatorRequired(ApiError):
    status, code, message = 400, "OPERATOR_REQUIRED", "X-Operator-ID header is required"


class InvalidQuery(ApiError):
    status, code, message = 400, "INVALID_QUERY", "invalid query parameter"


class InvalidPath(ApiError):
    status, code, message = 400, "INVALID_PATH", "invalid path parameter"


class OperatorNotAvailable(ApiError):
    # New operators start OFFLINE: the message says how to become available.
    status, code = 400, "OPERATOR_NOT_AVAILABLE"
    message = (
        "operator is not available: set its status with PUT /api/v1/operator/status "
        '{"status": "AVAILABLE"}'
    )


class NoSubscriptions(ApiError):
    status, code, message = 400, "NO_SUBSCRIPTIONS", "operator is not subscribed to any inbox"


class OperatorNotSubscribed(ApiError):
    status, code = 400, "OPERATOR_NOT_SUBSCRIBED"
    message = "target operator is not subscribed to the conversation's inbox"


class InboxDifferentTenant(ApiError):
    status, code, message = 400, "INBOX_DIFFERENT_TENANT", "inbox belongs to another tenant"


class LabelInboxMismatch(ApiError):
    status, code = 400, "LABEL_INBOX_MISMATCH"
    message = "label belongs to a different inbox than the conversation"


# 401 / 403
class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"
    message = "operator does not exist in this tenant"


class Forbidden(ApiError):
    status, code, message = 403, "FORBIDDEN", "insufficient role for this route"


class NotSubscribedToInbox(ApiError):
    status, code, message = 403, "NOT_SUBSCRIBED_TO_INBOX", "not subscribed to this inbox"


class InsufficientPermissions(ApiError):
    status, code, message = 403, "INSUFFICIENT_PERMISSIONS", "insufficient permissions"


class LabelPermissionDenied(ApiError):
    status, code, message = 403, "LABEL_PERMISSION_DENIED", "not allowed to manage these labels"


# 404
class NotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "resource not found"


class NoConversationsAvailable(ApiError):
    status, code, message = 404, "NO_CONVERSATIONS_AVAILABLE", "no conversations available"


class ConversationNotFound(ApiError):
    status, code, message = 404, "CONVERSATION_NOT_FOUND", "conversation not found"


class OperatorNotFound(ApiError):
    status, code, message = 404, "OPERATOR_NOT_FOUND", "operator not found"


class InboxNotFound(ApiError):
    status, code, message = 404, "INBOX_NOT_FOUND", "inbox not found"


class LabelNotFound(ApiError):
    status, code, message = 404, "LABEL_NOT_FOUND", "label not found"


class WebhookNotFound(ApiError):
    status, code, message = 404, "WEBHOOK_NOT_FOUND", "webhook not found"


# 405 / 409 / 413 / 422
class MethodNotAllowed(ApiError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "method not allowed"


class Conflict(ApiError):
    status, code, message = 409, "CONFLICT", "conflict"


class ConcurrentChange(Conflict):
    # SQLSTATE class 23 that no service turned into a specific answer: a concurrent change
    # (e.g. a row deleted meanwhile), not a server error.
    message = "the request conflicts with a concurrent change"


class ConversationAlreadyClaimed(ApiError):
    status, code = 409, "CONVERSATION_ALREADY_CLAIMED"
    message = "conversation is being claimed by someone else"


class ConversationNotQueued(ApiError):
    status, code, message = 409, "CONVERSATION_NOT_QUEUED", "conversation is not queued"


class ConversationNotAllocated(ApiError):
    status, code, message = 409, "CONVERSATION_NOT_ALLOCATED", "conversation is not allocated"


class ConversationAlreadyResolved(ApiError):
    status, code, message = 409, "CONVERSATION_ALREADY_RESOLVED", "conversation is resolved"


class OperatorNotAvailableForReassign(ApiError):
    status, code, message = 409, "OPERATOR_NOT_AVAILABLE", "target operator is not available"


class LabelNameConflict(ApiError):
    status, code, message = 409, "LABEL_NAME_CONFLICT", "a label with this name exists"


class LastAdmin(ApiError):
    status, code, message = 409, "LAST_ADMIN", "the tenant's last admin cannot be removed"


class CannotModifySelf(ApiError):
    status, code = 409, "CANNOT_MODIFY_SELF"
    message = "an operator cannot delete or demote itself"


class CapacityReached(ApiError):
    status, code, message = 409, "CAPACITY_REACHED", "operator is at capacity"


class IdempotencyKeyInProgress(ApiError):
    status, code = 409, "IDEMPOTENCY_KEY_IN_PROGRESS"
    message = "a request with this idempotency key is still being processed"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "request body exceeds 1 MiB"


class RequestTimeout(ApiError):
    status, code = 408, "REQUEST_TIMEOUT"
    message = "the request body was not received within READ_TIMEOUT"


class IdempotencyKeyReused(ApiError):
    status, code = 422, "IDEMPOTENCY_KEY_REUSED"
    message = "idempotency key was used with a different request"


# 5xx
class DatabaseUnavailable(ApiError):
    status, code, message = 503, "DB_UNAVAILABLE", "database unavailable, retry later"
    headers = MappingProxyType({"Retry-After": "1"})  # every 503 says when to try again
