"""Inbox Allocation Service: routes customer conversations to human operators."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inbox-allocation")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "dev"
