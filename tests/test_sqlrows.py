"""reconcile_project.sqlrows: the instances its SQL builds are the ones a queryset returns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.forms.models import model_to_dict

from platforms.models import Platform
from reconcile_project import sqlrows
from reconciliation.models import Affiliate, Campaign
from tests import factories

pytestmark = pytest.mark.django_db


def test_instances_match_the_orms_json_decimals_and_dates_included() -> None:
    campaign = factories.campaign(
        rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 0.12}}, end_date=dt.date(2030, 1, 31)
    )
    affiliate = factories.affiliate(trust_score=Decimal("0.4321"))
    platform = Platform.objects.get(slug="reddit")
    platform.config = {"quota_rps": 12.5}
    platform.save()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sqlrows.select_list(Campaign, 'c')}, {sqlrows.select_list(Affiliate, 'a')}, "
            f"{sqlrows.select_list(Platform, 'p')}, 42 FROM reconciliation_campaign c, reconciliation_affiliate a, "
            "platforms_platform p WHERE c.id = %s AND a.id = %s AND p.id = %s",
            [campaign.pk, affiliate.pk, platform.pk],
        )
        row = cursor.fetchone()

    (read_campaign, read_affiliate, read_platform), rest = sqlrows.split(row, Campaign, Affiliate, Platform)

    assert list(rest) == [42]
    for built, stored in ((read_campaign, campaign), (read_affiliate, affiliate), (read_platform, platform)):
        fresh = type(stored).objects.get(pk=stored.pk)
        assert model_to_dict(built) == model_to_dict(fresh)
        assert not built._state.adding and built._state.db == "default"
    assert read_campaign.rule_overrides == {"RECONCILIATION_SETTINGS": {"low_max": 0.12}}
    assert read_affiliate.trust_score == Decimal("0.4321")
    assert read_platform.config == {"quota_rps": 12.5}
