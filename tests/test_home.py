"""`/` in a browser: links to the API docs, the admin, health and Flower, each of which answers."""

import re

import pytest


@pytest.mark.django_db
def test_the_root_page_links_to_what_a_newcomer_looks_for(client, settings):
    settings.FLOWER_URL = "http://127.0.0.1:5555/"
    page = client.get("/")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    links = re.findall(r'href="([^"]+)"', page.content.decode())
    assert links[:4] == ["/api/docs/", "/api/schema/", "/admin/", "/healthz"]
    assert links[-1] == "http://127.0.0.1:5555/"
    for link in links[:3]:
        assert client.get(link).status_code in (200, 302), link  # the admin redirects to its login
