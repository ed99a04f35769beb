"""The project's one error type for user mistakes, and the CLI wrapper that reports it.

A `UserError` is something the user can fix (a missing folder, an unknown key, a wrong
file). Scripts catch it at the top and print one line, `error: ...`, with exit status 2;
their argument parser reports a bad argument the same way. Anything else is our bug and
keeps its traceback.
"""
import argparse
import functools
import sys
import warnings


class UserError(Exception):
    """A mistake in the user's input: the message says what is wrong and what to do."""


def exit_on_user_error(main):
    """Wrap a CLI entry point: a UserError becomes one line on stderr and exit status 2,
    and a warning one `warning: ...` line (a user reads the message, not our source)."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}",
                                                                   file=sys.stderr)
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)
    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with a bad argument reported as one line and status 2, as a
    UserError is (argparse would print the whole usage first); --help shows the usage."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
