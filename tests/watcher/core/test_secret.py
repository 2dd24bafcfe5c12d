"""Secrets in URLs: a password or token written into a configured URL is masked wherever
the URL turns up, and so is any URL's password; so are the forms made from a secret (a
Basic auth value) and what is left of one that a length cap cut."""

from __future__ import annotations

import base64

from watcher.core.secret import Secret, protect_basic_auth, protect_url, redact


def test_a_secret_is_masked_in_every_printable_form() -> None:
    secret = Secret("Plain-Secret-41c7")
    assert "41c7" not in repr(secret) + str(secret) + f"{secret}"
    assert redact("said Plain-Secret-41c7 back") == "said ******** back"


def test_any_url_password_is_masked_even_one_never_configured() -> None:
    text = (
        "HTTPConnectionPool: Max retries exceeded with url http://watcher:Un-Known-pw9@127.0.0.19/x"
    )
    assert (
        redact(text)
        == "HTTPConnectionPool: Max retries exceeded with url http://watcher:********@127.0.0.19/x"
    )


def test_a_configured_urls_password_is_masked_also_without_its_url() -> None:
    protect_url("https://monitor:Url-P%40ss-58d1@mdm.example/api")
    # A library may print the host and the password apart, or decoded.
    assert "58d1" not in redact("login monitor / Url-P@ss-58d1 refused; raw Url-P%40ss-58d1")


def test_credential_query_values_are_masked_and_other_parameters_kept() -> None:
    protect_url(
        "https://mdm.example/api/devices?page=2&sort_key=lastname&api_key=Mdm-Key-61b0e&auth=basic"
    )
    text = redact(
        "GET /api/devices?page=2&sort_key=lastname&api_key=Mdm-Key-61b0e&auth=basic failed"
    )
    assert text == "GET /api/devices?page=2&sort_key=lastname&api_key=********&auth=basic failed"
    assert redact("lastname") == "lastname"


def test_token_like_path_pieces_of_a_hook_url_are_masked() -> None:
    protect_url(
        "https://hooks.example/services/T0A1B2C3D/B9Z8Y7X6W/hT9sToKen42abc", path_tokens=True
    )
    text = redact("Max retries exceeded with url: /services/T0A1B2C3D/B9Z8Y7X6W/hT9sToKen42abc")
    assert text == "Max retries exceeded with url: /services/********/********/********"
    assert redact("/services/hooks") == "/services/hooks"


def test_the_basic_auth_value_of_a_user_and_password_is_masked() -> None:
    protect_basic_auth("monitor", "Basic-Pw-77c2")
    header = "Basic " + base64.b64encode(b"monitor:Basic-Pw-77c2").decode()
    assert redact(f"the server echoed Authorization: {header}") == (
        "the server echoed Authorization: Basic ********"
    )


def test_a_urls_userinfo_is_masked_in_its_basic_auth_form() -> None:
    protect_url("https://hook-user:Hook-Pw-31e9@127.0.0.1/hook")
    encoded = base64.b64encode(b"hook-user:Hook-Pw-31e9").decode()
    assert encoded not in redact(f"echo: Authorization: Basic {encoded}")


def test_a_secret_cut_by_a_length_cap_is_masked_at_the_cut() -> None:
    Secret("Cut-Secret-4f7a9b")
    assert redact("HTTP 400 body: token=Cut-Secret-4f") == "HTTP 400 body: token=********"
    assert redact("t-4f7a9b was refused") == "******** was refused"


def test_a_word_at_the_start_or_end_of_a_message_is_not_taken_for_a_cut_secret() -> None:
    Secret("Passwordless-9d1e")
    assert redact("Passwordless login refused") == "Passwordless login refused"
    assert redact("no such Password") == "no such Password"
