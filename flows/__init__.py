"""crystaloop.flows: campaigns as Prefect 3 flows; the only package that imports Prefect.

* :mod:`crystaloop.flows.campaign` — ``campaign_flow`` (one ``iteration_flow`` subflow per
  iteration) and the task runner choice.
* :mod:`crystaloop.flows.tasks` — one thin task per engine step of :mod:`crystaloop.loop.campaign`.
* :mod:`crystaloop.flows.artifacts`, :mod:`crystaloop.flows.plots` — per-iteration artifacts.
* :mod:`crystaloop.flows.deploy` — deployments, schedules, pause/resume, triggered runs.
* :mod:`crystaloop.flows.server` — a local Prefect server and its start-up wait.
* :mod:`crystaloop.flows.config` — ``FlowSettings`` (runner, retries, caching, artifacts).

Importing this package imports nothing; import the modules you need.
"""
