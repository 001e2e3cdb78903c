"""replan_gateway.

The public API: routing and load balancing, auth, rate limits, async jobs, progress events,
compatibility routes and the web editor.
"""
