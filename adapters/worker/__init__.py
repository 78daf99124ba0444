"""The push worker (README "Push-back to providers"): the loop that claims outbox rows and
pushes them to the providers (``outbox``), and the queues it works off between rounds:
HubSpot contact lookups (``lookups``) and confirmation mail (``confirmations``).
"""
