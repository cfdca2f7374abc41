"""gunicorn's settings for the production shape (``gunicorn -c config/gunicorn.conf.py``).

The access log names the request's path and Referer; an order's path carries its access token, so
every access-log field is redacted (``ops.log_redaction``) before it is written.
"""

from gunicorn.glogging import Logger

from ops.log_redaction import redact

accesslog = "-"


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()
        }


logger_class = RedactingLogger
