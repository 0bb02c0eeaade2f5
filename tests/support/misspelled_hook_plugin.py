"""A test plugin with a hook name that does not exist: pluggy's check_pending() rejects it."""

from toolkit.hookspecs import hookimpl


@hookimpl
def register_backend(register):  # the real hook is register_backends
    raise AssertionError("never called")
