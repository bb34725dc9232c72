"""Stripe's error responses: the ``{"error": {...}}`` body and its HTTP status."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error response in Stripe's ``{"error": {...}}`` shape."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        body: dict[str, Any] = {"type": type_, "message": message}
        if code is not None:
            body["code"] = code
        if param is not None:
            body["param"] = param
        self.body = {"error": body}


def invalid_request(message: str, code: str | None = None, param: str | None = None, status: int = 400) -> StripeError:
    """Stripe's answer to a request it will not serve as asked (``invalid_request_error``)."""
    return StripeError(status, "invalid_request_error", message, code, param)
