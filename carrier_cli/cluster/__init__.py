"""Several Carrier processes over one PostgreSQL and one Redis (docs/scaling.md).

Nothing here is imported unless `redis_url` is set: one process on SQLite (the default)
never loads redis-py. `redis_client.connect` is the only place a Redis connection is made.
"""
