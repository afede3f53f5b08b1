"""JSON errors for every HTTP error, so clients never parse an HTML page."""

from __future__ import annotations

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError
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

    @app.errorhandler(OperationalError)
    def handle_database_unavailable(error: OperationalError):
        # The database is down or unreachable: temporary, like a broker outage, so 503
        # (retry later), not 500. The readiness probe reports the same outage.
        app.logger.warning("database unavailable: %s", type(error.orig).__name__)
        return error_response(503, "the database is unavailable; retry later")

    @app.errorhandler(Exception)
    def handle_unexpected_error(error: Exception):
        # Log the details; the client gets JSON without internals.
        app.logger.exception("unhandled error", exc_info=error)
        return error_response(500, "internal server error")
