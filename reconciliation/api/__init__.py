"""The REST API, v1 (issue 5): affiliates submit claims, advertisers read verified totals, staff re-run."""
