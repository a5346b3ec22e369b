from datetime import timedelta

from gunicorn.config import Config

from portal.gunicorn_logging import MaskingLogger


class _Response:
    status = "200 OK"
    sent = 512
    headers = ()


class _Request:
    headers = ()
    method = "GET"
    path = "/l/SeCrEtToKeN"
    query = "q=Dubois"
    uri = "/l/SeCrEtToKeN?q=Dubois"
    version = (1, 1)


def test_access_log_masks_link_tokens_and_search_terms():
    config = Config()
    config.set("accesslog", "-")
    logger = MaskingLogger(config)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/l/SeCrEtToKeN?q=Dubois",
        "PATH_INFO": "/l/SeCrEtToKeN",
        "QUERY_STRING": "q=Dubois",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": "https://portal/l/SeCrEtToKeN",
    }
    atoms = logger.atoms(_Response(), _Request(), environ, timedelta(seconds=0.01))
    line = config.access_log_format % atoms
    assert "SeCrEtToKeN" not in line
    assert "Dubois" not in line
    assert "Dubois" not in atoms["q"]


class _InvitationRequest(_Request):
    path = "/shares/invitation/InViTaTiOnToKeN/"
    query = ""
    uri = "/shares/invitation/InViTaTiOnToKeN/"


def test_access_log_masks_share_invitation_tokens_in_the_url_and_the_referer():
    config = Config()
    config.set("accesslog", "-")
    logger = MaskingLogger(config)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/shares/invitation/InViTaTiOnToKeN/",
        "PATH_INFO": "/shares/invitation/InViTaTiOnToKeN/",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": "https://portal/shares/invitation/InViTaTiOnToKeN/",
    }
    atoms = logger.atoms(_Response(), _InvitationRequest(), environ, timedelta(seconds=0.01))
    line = config.access_log_format % atoms
    assert "InViTaTiOnToKeN" not in line
    assert "/shares/invitation/[masked]/" in atoms["U"]


def test_access_log_names_the_client_behind_a_trusted_proxy_not_the_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    config = Config()
    config.set("accesslog", "-")
    logger = MaskingLogger(config)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.5",
        "HTTP_X_FORWARDED_FOR": "192.0.2.1, 198.51.100.7",
    }
    atoms = logger.atoms(_Response(), _Request(), environ, timedelta(seconds=0.01))
    assert (config.access_log_format % atoms).startswith("198.51.100.7 ")

    # From anyone else the header is the client's own writing: the log names the sender.
    environ["REMOTE_ADDR"] = "203.0.113.9"
    atoms = logger.atoms(_Response(), _Request(), environ, timedelta(seconds=0.01))
    assert atoms["h"] == "203.0.113.9"
