"""A product's picture: uploaded in the admin (checked and re-encoded by Pillow, a non-image refused
in words), served from its own URL with a version, shown on the session page and the list."""

import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from auctions.models import ProductPicture

pytestmark = pytest.mark.django_db


def _png(width=2000, height=1000) -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    out.seek(0)
    out.name = "camera.png"
    return out


def _admin_save(client, product, **files):
    url = reverse("admin:auctions_product_change", args=[product.pk])
    return client.post(url, {"name": product.name, "description": product.description, **files})


def test_an_admin_uploads_a_picture_that_is_shown_scaled_on_the_pages(client, admin_user, make_session):
    session = make_session()
    product = session.product
    client.force_login(admin_user)
    saved = _admin_save(client, product, picture_upload=_png())
    assert saved.status_code == 302, saved.content.decode()[:3000]
    product.refresh_from_db()
    assert product.picture_updated_at is not None

    url = reverse("product-picture", args=[product.pk])
    served = Client().get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.format == "WEBP" and max(image.size) == 1200  # scaled down, kept its shape
        assert image.size == (1200, 600)
    assert Client().get(url, HTTP_IF_NONE_MATCH=served["ETag"]).status_code == 304

    page = Client().get(reverse("session", args=[session.pk])).content.decode()
    assert f'src="{url}?v=' in page and 'id="product-picture"' in page
    assert f'src="{url}?v=' in Client().get(reverse("sessions")).content.decode()

    removed = _admin_save(client, product, picture_remove="on")
    assert removed.status_code == 302
    assert Client().get(url).status_code == 404 and not ProductPicture.objects.exists()


def test_a_file_that_is_not_an_image_is_refused_in_words(client, admin_user, make_session):
    product = make_session().product
    client.force_login(admin_user)
    script = io.BytesIO(b"<svg onload=alert(1)></svg>")
    script.name = "evil.png"
    refused = _admin_save(client, product, picture_upload=script)
    assert refused.status_code == 200
    assert "not a PNG, JPEG, GIF or WebP image" in refused.content.decode()
    assert not ProductPicture.objects.exists()


def test_a_product_without_a_picture_answers_404_and_its_page_shows_none(client, make_session):
    session = make_session()
    assert client.get(reverse("product-picture", args=[session.product.pk])).status_code == 404
    assert "product-picture" not in client.get(reverse("session", args=[session.pk])).content.decode()
