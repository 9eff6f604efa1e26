"""Every kind of action-log entry, in one vocabulary.

The values are the strings the action log has always held: changing one would change what
old records mean, so a new kind is added here and an old one is never renamed.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    # Intake and planning (engine/recorder.py)
    ALERT_RECEIVED = "alert_received"
    ALERT_MATCHED = "alert_matched"
    ALERT_RESOLVED = "alert_resolved"
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_REPLANNED = "incident_replanned"
    INCIDENT_CLOSED = "incident_closed"
    KEY_REJECTED = "key_rejected"
    SCOPE_UNKNOWN = "scope_unknown"
    NOTIFY_ONLY = "notify_only"
    WOULD_ACT = "would_act"
    STORM_GUARD_TRIPPED = "storm_guard_tripped"
    CONTAINMENT_FAILED = "containment_failed"
    # Automatic steps
    INTENT = "intent"
    OUTCOME = "outcome"
    ALREADY_CONTAINED = "already_contained"
    ESCALATION = "escalation"
    STEP_TAKEN_OVER = "step_taken_over"
    # People's changes (engine/manual.py)
    RELEASE_INTENT = "release_intent"
    CONTAIN_INTENT = "contain_intent"
    RELEASE_FAILED = "release_failed"
    CONTAIN_FAILED = "contain_failed"
    RELEASE = "release"
    MANUAL_CONTAIN = "manual_contain"
    RELEASE_REQUESTED = "release_requested"
    RELEASE_APPROVED = "release_approved"
    RELEASE_EXPIRED = "release_expired"
    RELEASE_REQUEST_ENDED = "release_request_ended"
    # Drift repair (engine/reconciler.py)
    DRIFT_DETECTED = "drift_detected"
    DRIFT_CORRECTED = "drift_corrected"
    DRIFT_REPAIR_FAILED = "drift_repair_failed"
    DRIFT_WOULD_REPAIR = "drift_would_repair"
    # Automation mode (engine/modes.py)
    MODE_CHANGED = "mode_changed"
    BREAK_GLASS_STARTED = "break_glass_started"
    BREAK_GLASS_EXTENDED = "break_glass_extended"
    BREAK_GLASS_ENDED = "break_glass_ended"
    # Rules and evidence
    RULES_RELOADED = "rules_reloaded"
    RULES_RELOAD_REFUSED = "rules_reload_refused"
    EVIDENCE_SEALED = "evidence_sealed"
