"""JSON errors for every HTTP error, so clients never parse an HTML page."""

from __future__ import annotations

from flask import Flask, jsonify, request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
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


def json_object(*, optional: bool = False) -> dict:
    """Return the request's JSON object; 400 when it is malformed or not an object.

    optional: no JSON body (or `null`) is an empty object instead of a 400.
    """
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # Flask's silent=True catches ValueError only; deep nesting exhausts the parser.
        raise ApiError(400, "the request body is nested too deeply", field="body") from None
    if body is None and optional:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", field="body")
    return body


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

    @app.errorhandler(DataError)
    def handle_value_refused(error: DataError):
        # A backstop: validation should refuse the value first. Logged, so the missing rule
        # is found; the client gets the 422 its input deserves, never a 500.
        app.logger.warning("the database refused a value: %s", str(error.orig)[:200])
        return error_response(422, "a value in the request is out of range for the database")

    @app.errorhandler(IntegrityError)
    def handle_conflict(error: IntegrityError):
        # A constraint refused the write (e.g. an Idempotency-Key taken by a racing request).
        app.logger.warning("a constraint refused a write: %s", str(error.orig)[:200])
        return error_response(409, "the request conflicts with a concurrent one; retry")

    @app.errorhandler(Exception)
    def handle_unexpected_error(error: Exception):
        # Log the details; the client gets JSON without internals.
        app.logger.exception("unhandled error", exc_info=error)
        return error_response(500, "internal server error")
