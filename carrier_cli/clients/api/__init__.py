"""`carrier serve`: the HTTP + WebSocket API in front of the same runtimes the CLI uses.

Layout: `app.py` builds the FastAPI application from an `ApiState` (`state.py`: the
runtimes, the shared store, the key service); `errors.py` owns the one JSON error shape;
`auth.py` the key check and scopes; `routes/` one module per resource; `server.py` runs
uvicorn beside the other clients under the supervisor. FastAPI and uvicorn are imported
only from here, so `carrier --help` never pays for them.
"""
