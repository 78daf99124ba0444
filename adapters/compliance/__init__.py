"""Proving compliance (README "Compliance"): the legal limits, the time-to-honour report and
the signed audit export."""
