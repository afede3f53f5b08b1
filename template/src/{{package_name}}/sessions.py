"""Flask's signed-cookie sessions, with no serializer built for a request without a cookie."""

from __future__ import annotations

from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieOnlySessionInterface(SecureCookieSessionInterface):
    """Flask's session interface; a request without a session cookie gets an empty session.

    With SECRET_KEY set, Flask builds an itsdangerous serializer on every request before it
    looks for the cookie, which an API call never sends: 3 % of the web's CPU under load
    (docs/benchmarks.md). Without the cookie the answer is the empty session Flask returns
    too; with it, Flask's own code runs.
    """

    def open_session(self, app, request) -> SecureCookieSession | None:
        """Open the request's session, building the serializer only when a cookie came."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
