"""The Lua script registry: each script registered once per Redis client.

redis-py's Script runs EVALSHA and falls back to EVAL when Redis answers NOSCRIPT (after a restart
or SCRIPT FLUSH), so no caller ever sees that; on a cluster client it loads the script on every
primary (SCRIPT LOAD goes to all of them) and EVALSHA goes to the shard of the script's first key.
The apps own their scripts (files next to their code) and hand the source in; this module only
keeps the registrations."""

from pathlib import Path

from redis.client import Pipeline

_scripts: dict[tuple[int, str], object] = {}
# Scripts loaded on a cluster for pipelines (script_queue): (id of the registered script).
_loaded_for_pipelines: set[int] = set()


def lua_sources(directory: Path, *names: str) -> dict[str, str]:
    """{name: source} of `<directory>/<name>.lua` for each name, read once at import."""
    return {name: (directory / f"{name}.lua").read_text() for name in names}


def script(client, name: str, source: str):
    """The registered script `name` (with `source`) for this client: one registration per client."""
    cache_key = (id(client), name)
    registered = _scripts.get(cache_key)
    if registered is None:
        registered = _scripts[cache_key] = client.register_script(source)
    return registered


def evalsha_command(registered, *, keys: list, args: list) -> tuple:
    """The raw EVALSHA of a registered script, to queue on a pipeline with `execute_command`.
    redis-py's cluster pipelines refuse `.evalsha()` (and so a Script called with client=pipe) but
    not the command itself, which they route by its first key like any other. No pipeline loads a
    script queued this way: a reply may be NoScriptError, for the caller to handle."""
    return ("EVALSHA", registered.sha, len(keys), *keys, *args)


def script_queue(pipe, registered, *, keys: list, args: list) -> None:
    """Queue a registered script on a sync pipeline, plain or cluster. A plain pipeline loads the
    script itself before it runs; for a cluster pipeline it is loaded on every primary here, once
    per process (a SCRIPT FLUSH afterwards makes the pipeline's replies NoScriptError)."""
    if isinstance(pipe, Pipeline):
        registered(keys=keys, args=args, client=pipe)
        return
    if id(registered) not in _loaded_for_pipelines:
        registered.registered_client.script_load(registered.script)
        _loaded_for_pipelines.add(id(registered))
    pipe.execute_command(*evalsha_command(registered, keys=keys, args=args))
