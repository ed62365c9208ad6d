"""``ainative dashboard``: a web view of the control plane (cluster, queues, jobs, endpoints, cost)
over one JSON API (``api``), served by Starlette/uvicorn on 127.0.0.1 (``server``).

The static files ship inside the package: ``static/uPlot.iife.min.js`` is uPlot 1.6.32 (MIT, see
``static/uPlot.LICENSE``), taken from the npm registry with ``npm pack uplot``; nothing is fetched
at run time and there is no build step.
"""
