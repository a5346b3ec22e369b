import logging

from portal.logging import MaskSecretsFilter, mask_secrets


def test_link_tokens_and_search_terms_are_masked():
    line = '"GET /l/Zx8_k-2QpL9 HTTP/1.1" 200'
    assert "Zx8_k-2QpL9" not in mask_secrets(line)
    api = "GET /api/v1/studies/?q=M%C3%BCller&patient_id=P123&modality=CT"
    masked = mask_secrets(api)
    assert "M%C3%BCller" not in masked and "P123" not in masked
    assert "modality=CT" in masked


def test_filter_masks_arguments_of_django_request_lines():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /studies/?x=1&password=hunter2 HTTP/1.1", "200", "512"),
        None,
    )
    MaskSecretsFilter().filter(record)
    assert "hunter2" not in record.getMessage()
    assert "x=1" in record.getMessage()


def test_share_invitation_tokens_are_masked_in_the_path_and_in_a_login_next():
    token = "Qm9vb29vb29vb29vb29vb29vb29vb29vb29vb29vb2"
    for line in (
        f'"GET /shares/invitation/{token}/ HTTP/1.1" 404',
        f'"GET /accounts/login/?next=/shares/invitation/{token}/ HTTP/1.1" 200',
    ):
        masked = mask_secrets(line)
        assert token not in masked
        assert "/shares/invitation/[masked]/" in masked
