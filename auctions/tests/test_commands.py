"""Management commands on real Redis and PostgreSQL."""

import datetime as dt
import re

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command

from accounts.user_cache import get_current_user, local_clear
from auctions.models import BiddingSession
from auctions.rules import price_parse
from auctions.services import bid_place
from core.exceptions import ApplicationError
from core.redis import get_redis
from leaderboard.selectors import leaderboard_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def place(session_id, user, price: str):
    async def run():
        return await bid_place(session_id=session_id, user=await get_current_user(str(user.pk)),
                               price=price_parse(price))
    return async_to_sync(run)()


def board(session_id):
    return async_to_sync(leaderboard_page)(session_id=session_id, page=1, page_size=200)


def test_rebuild_leaderboard_after_flushdb_restores_the_board_and_bidding_continues(make_session, make_user, capsys):
    session = make_session(beta=10.0, gamma=1.0)
    users = [make_user(weight=1 + i / 10) for i in range(6)]
    for i, user in enumerate(users):
        place(session.pk, user, f"{20 + i}.00")
    place(session.pk, users[0], "40.00")
    call_command("persist_bids")
    assert "persisted 7 bid events" in capsys.readouterr().out
    before = board(session.pk)

    get_redis().flushdb()
    local_clear()
    call_command("rebuild_leaderboard", str(session.pk))
    after = board(session.pk)
    assert after["entries"] == before["entries"]
    assert after["threshold_score"] == before["threshold_score"]
    assert after["highest_price"] == before["highest_price"]
    assert after["version"] > 0

    with pytest.raises(ApplicationError) as rejected:
        place(session.pk, users[0], "40.00")
    assert rejected.value.code == "not_higher"
    accepted = place(session.pk, users[0], "41.00")
    assert accepted.seq == 8 and accepted.rank == 1


def test_settle_session_refuses_a_session_that_has_not_ended(make_session):
    session = make_session()
    with pytest.raises(CommandError, match="not ended"):
        call_command("settle_session", str(session.pk))


def test_settle_session_settles_an_ended_session_once(make_session, make_user, capsys):
    session = make_session(starts_in=-10, lasts=5, inventory=1)
    call_command("settle_session", str(session.pk))
    assert "settled" in capsys.readouterr().out
    call_command("settle_session", str(session.pk))
    assert "already settled" in capsys.readouterr().out
    assert BiddingSession.objects.get(pk=session.pk).status == "settled"


def test_create_session_prints_a_new_session_id(db, capsys):
    call_command("create_session", "--product", "Lamp", "--inventory", "2", "--duration", "60")
    session_id = capsys.readouterr().out.strip()
    assert BiddingSession.objects.get(pk=session_id).inventory == 2


def test_create_session_sets_soft_close_and_refuses_bad_terms_in_words(db, capsys):
    call_command("create_session", "--duration", "60", "--extend-window", "30", "--extend-by", "20",
                 "--hard-end-after", "300")
    session = BiddingSession.objects.get(pk=capsys.readouterr().out.strip())
    assert (session.extend_window_seconds, session.extend_by_seconds) == (30, 20)
    assert session.hard_end_time - session.scheduled_end_time == dt.timedelta(seconds=300)
    with pytest.raises(CommandError, match="extend_by_seconds: must be at least 1 second"):
        call_command("create_session", "--extend-window", "30")


def test_seed_demo_settles_one_session_with_real_bids_and_winners_and_is_safe_to_rerun(capsys):
    from auctions.models import Ranking
    from auctions.verification import session_audit

    call_command("seed_demo", "--bidders", "12")
    settled = BiddingSession.objects.get(status="settled", product__name="Espresso machine")
    ranking = list(Ranking.objects.filter(session=settled).order_by("rank"))
    assert len(ranking) == 10 and sum(r.is_winner for r in ranking) == 3
    assert settled.final_price == min(r.price for r in ranking if r.is_winner)
    assert settled.log_digest and settled.end_time == settled.scheduled_end_time
    assert session_audit(session_id=settled.pk) is None  # the independent audit agrees
    assert {"active", "scheduled", "ended", "settled"} <= set(re.findall(r"session (\w+): ", capsys.readouterr().out))

    call_command("seed_demo", "--bidders", "12")
    assert "session settled: " + str(settled.pk) + " (exists)" in capsys.readouterr().out
    assert BiddingSession.objects.filter(product__name="Espresso machine").count() == 1


def test_rebuild_leaderboard_rejects_unknown_sessions(db):
    with pytest.raises(CommandError):
        call_command("rebuild_leaderboard", "00000000-0000-0000-0000-000000000000")


def test_simulate_bidders_refuses_a_remote_target_and_an_unbounded_run():
    with pytest.raises(CommandError, match="not loopback"):
        call_command("simulate_bidders", "--url", "http://example.com", "--session", "x")
    with pytest.raises(CommandError, match="duration"):
        call_command("simulate_bidders", "--duration", "100000", "--session", "x")
