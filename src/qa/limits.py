"""Limits on what a client may send, shared by the server, the app and the API's description."""

MAX_REQUEST_LINE = 8190  # bytes, gunicorn's ceiling (default 4094): room for long non-ASCII questions in a URL
MAX_BODY_BYTES = 16 * 1024
