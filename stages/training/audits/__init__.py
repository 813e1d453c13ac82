"""Audits of trained heads, each a keyed step (stages/training/audits/base.py); the built-in kinds register
on import: ``faithfulness`` (FACR) and ``circumplex``."""

from stages.training.audits import circumplex, faithfulness  # noqa: F401 (they register themselves)
from stages.training.audits.base import AUDITS, Audit, get_audit, register_audit, run_audit

__all__ = ["AUDITS", "Audit", "get_audit", "register_audit", "run_audit"]
