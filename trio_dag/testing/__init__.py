"""Tools to test pipelines built on trio_dag, and trio_dag itself.

- :func:`check_run` holds a finished run to every guarantee of trio_dag
  that its report and events show (:data:`RULES` lists them);
  :class:`Recorder` collects the events for it.
- :func:`dag_shapes`, :func:`dags` and :func:`dag_plans` are Hypothesis
  strategies for random dependency structures and random runnable DAGs
  (or their :class:`DagPlan`, to build several times). Drawn tasks may raise
  :class:`Interrupt`, and raise :class:`BrokenPromise` when they see the
  engine break a promise.

Importing this package imports Hypothesis at once when it is installed (it
comes with ``pip install trio_dag[test]``). Without it, ``check_run`` and
``Recorder`` still work, and the strategies raise ImportError saying what
to install. ``import trio_dag`` alone never imports Hypothesis.

A run checked in a few lines::

    recorder = trio_dag.testing.Recorder()
    report = trio_dag.run_sync(dag, limit=4, check=False, on_event=recorder)
    trio_dag.testing.check_run(dag, report, recorder, limit=4)

See the user guide, *The testing toolkit*.
"""

import typing as _typing

from .. import _public
from ._check import RULES as RULES
from ._check import check_run as check_run
from ._plans import BrokenPromise as BrokenPromise
from ._plans import DagPlan as DagPlan
from ._plans import Interrupt as Interrupt
from ._recorder import Recorder as Recorder

if _typing.TYPE_CHECKING:
    from ._growth_plans import Growth as Growth
    from ._growth_plans import growing_dags as growing_dags
    from ._strategies import DagShape as DagShape
    from ._strategies import dag_plans as dag_plans
    from ._strategies import dag_shapes as dag_shapes
    from ._strategies import dags as dags
else:
    try:
        from ._growth_plans import Growth as Growth
        from ._growth_plans import growing_dags as growing_dags
        from ._strategies import DagShape as DagShape
        from ._strategies import dag_plans as dag_plans
        from ._strategies import dag_shapes as dag_shapes
        from ._strategies import dags as dags
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "hypothesis":
            raise
        _MISSING = exc

        def __getattr__(name: str) -> _typing.Any:
            if name in ("DagShape", "Growth", "dag_plans", "dag_shapes", "dags", "growing_dags"):
                raise ImportError(
                    f"trio_dag.testing.{name} needs Hypothesis, which is not installed; "
                    "install it with `pip install trio_dag[test]`",
                    name="hypothesis",
                ) from _MISSING
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RULES",
    "BrokenPromise",
    "DagPlan",
    "DagShape",
    "Growth",
    "Interrupt",
    "Recorder",
    "check_run",
    "dag_plans",
    "dag_shapes",
    "dags",
    "growing_dags",
]

__dir__ = _public.publish(__name__, globals())
