import logging
import re

# Guest-link tokens travel in the path /l/<token>, share invitations' in
# /shares/invitation/<token>/. Secrets, and the patient data an API client may search by (the
# REST contract puts it in the query string), travel as query parameters.
_LINK_TOKEN = re.compile(r"(/l/|/shares/invitation/)[A-Za-z0-9_\-]+")
_SECRET_PARAM = re.compile(
    r"((?:^|[?&])(?:token|password|code|otp|q|patient_id|patient_name|accession|birth_date)=)"
    r"[^&\s\"]+",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """Replace link tokens, secrets and patient search terms in a URL or log line by a mask."""
    text = _LINK_TOKEN.sub(r"\1[masked]", text)
    return _SECRET_PARAM.sub(r"\1[masked]", text)


class MaskSecretsFilter(logging.Filter):
    """Masks secrets in every record before any handler formats it, including Django's request
    log lines, whose arguments carry the request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if record.args:
            if isinstance(record.args, tuple):
                record.args = tuple(
                    mask_secrets(arg) if isinstance(arg, str) else arg for arg in record.args
                )
            elif isinstance(record.args, dict):
                record.args = {
                    key: mask_secrets(value) if isinstance(value, str) else value
                    for key, value in record.args.items()
                }
        return True
