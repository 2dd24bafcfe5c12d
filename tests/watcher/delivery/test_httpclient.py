"""The integrations' HTTP session against real servers: how much of an answer it keeps,
and which headers a redirect may take to another host."""

from __future__ import annotations

from collections.abc import Callable

from tests.servers.httpd import HTTPTestServer
from watcher.delivery.httpclient import MAX_RESPONSE_BYTES, HttpClients, new_session


def test_an_answer_is_kept_up_to_the_cap_and_no_more(http_server: HTTPTestServer) -> None:
    http_server.set_response(
        "/huge", status=500, body=b"x" * (MAX_RESPONSE_BYTES + 2 * 1024 * 1024)
    )
    http_server.set_response("/small", body=b'{"id": 7}')
    session = new_session(clients=HttpClients())
    huge = session.get(http_server.url_for("/huge"))
    assert huge.status_code == 500 and len(huge.content) == MAX_RESPONSE_BYTES
    assert session.get(http_server.url_for("/small")).json() == {"id": 7}


def test_credentials_do_not_follow_a_redirect_to_another_host(
    http_server_factory: Callable[..., HTTPTestServer],
) -> None:
    home, other = http_server_factory(), http_server_factory()
    elsewhere = other.url_for("/landing").replace("127.0.0.1", "localhost")  # another host name
    home.set_response("/moved", status=302, headers={"Location": "/here"})
    home.set_response("/away", status=307, headers={"Location": elsewhere})
    session = new_session(clients=HttpClients())
    session.headers["X-Redmine-API-Key"] = "Rm-Key-4f0a"
    session.headers["Authorization"] = "token Rt-Tok-9d2c"
    assert session.get(home.url_for("/moved")).status_code == 200
    (kept,) = home.requests_for("/here")
    assert (
        kept.headers["X-Redmine-API-Key"] == "Rm-Key-4f0a"
        and kept.headers["Authorization"] == "token Rt-Tok-9d2c"
    )
    assert (
        session.post(
            home.url_for("/away"), json={"a": 1}, headers={"X-Auth": "Hook-Hdr-1b7e"}
        ).status_code
        == 200
    )
    (landed,) = other.requests
    assert not {"X-Redmine-API-Key", "Authorization", "X-Auth"} & set(landed.headers)
    assert landed.headers["Content-Type"] == "application/json" and landed.body == b'{"a": 1}'
