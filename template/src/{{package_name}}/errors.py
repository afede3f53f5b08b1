"""JSON errors for every HTTP error, so clients never parse an HTML page."""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """An error with an HTTP status the client can act on."""

    def __init__(self, status: int, message: str, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def error_response(status: int, message: str, **details: object):
    """Return the JSON error body and status used by every endpoint."""
    body = {"error": {"status": status, "message": message, **details}}
    return jsonify(body), status


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        return error_response(error.status, error.message, **error.details)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        return error_response(error.code or 500, error.description or error.name)

    @app.errorhandler(Exception)
    def handle_unexpected_error(error: Exception):
        # Log the details; the client gets JSON without internals.
        app.logger.exception("unhandled error", exc_info=error)
        return error_response(500, "internal server error")
