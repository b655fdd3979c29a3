"""trio_dag: run directed acyclic graphs of tasks on Trio, with a compiled core."""

from ._impl import CORE as CORE

__version__ = "0.1.0"
