"""Webhooks: signed POSTs of agent events to the operator's receivers, via a durable outbox.

`settings` (the `webhooks:` entries), `signing` (the signature scheme and a `verify` a
receiver can copy), `ssrf` (which addresses a delivery may reach), `policy` (which stored
messages and events become outbox rows), `sender` (the supervisor service that delivers
them). Light to import: aiohttp is imported only by the sender, when it runs.
"""
