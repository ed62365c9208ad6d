"""Inference endpoints on Ray Serve: ``Endpoint(...).deploy()`` -> ``EndpointHandle``.

The only package that imports ``ray.serve``; nothing is imported here so that
``import ainative`` stays fast. Public names: ``ainative.Endpoint``, ``ainative.EndpointHandle``,
``ainative.BatchingConfig``, ``ainative.AutoscalingConfig``. See docs/serving.md.
"""
