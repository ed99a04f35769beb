"""Moved to common.errors (datasets and models need it, and do not import learning); the
names stay importable here for code written against them."""
from common.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: F401
