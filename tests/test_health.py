import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def test_healthz_answers(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_200_when_everything_is_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok", "broker": "ok"}


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "unavailable"
    assert "redis" in body["detail"]
    assert body["checks"]["redis"].startswith("unreachable")
    assert body["checks"]["postgres"] == "ok"


def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "broker" in response.json()["detail"]
