"""Worker that audits the discounts discount_calculator draws, round after round."""

from discount_audit.audit import Audit, audit_round

__all__ = ["Audit", "audit_round"]
