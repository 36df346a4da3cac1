"""``moduletrace demo``: the incident on one machine, recorded and explained.

``runner`` drives two real services (``services``: module-service creates, canvas-service loads)
with injected faults and checks the verdicts; ``tokens``, ``pool`` and ``errors`` are the small
pieces those services are made of.
"""
