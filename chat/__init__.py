"""Claims from chat: a Discord application's interactions endpoint and a Slack app's slash commands.

Two more edges in front of the submission service (DESIGN §9): they authenticate the request (the
platform's signature), find the affiliate linked to the chat user, parse what a person typed and call
``reconciliation.services.submissions``; there is no second path into the database.
"""
