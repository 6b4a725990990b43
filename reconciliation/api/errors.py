"""The API's own exception types (kept apart from the handler: the JSON parser needs them at import)."""

from __future__ import annotations

from rest_framework import exceptions, status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class NotJSON(exceptions.APIException):
    # The contract: a body that is not JSON is a 400 (not DRF's 415).
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request body must be JSON (Content-Type: application/json)."
    default_code = "not_json"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "Unprocessable request."
    default_code = "unprocessable"


class DuplicatePostConflict(Conflict):
    default_code = "duplicate_post"

    def __init__(self, post_id: int, update_url: str):
        super().__init__(
            f"You already submitted this post (post {post_id}). Send new metrics for it with PUT {update_url}",
            code=self.default_code,
        )
        self.extra = {"existing_post_id": post_id, "update_url": update_url}
