"""Plumbing shared by every app: Redis clients and keys, the script registry, errors, JSON, database
helpers, metrics, rate limits, request ids and logs. Imports no app of this project."""
