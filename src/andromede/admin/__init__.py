"""The admin face: a REST API (FastAPI, OpenAPI served) for operators and tenants."""
