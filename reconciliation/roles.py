"""The admin's groups (README "Roles"); ``manage.py setup_roles`` gives them their permissions."""

ANALYST_GROUP = "risk_analyst"
OPS_GROUP = "ops"
