"""Audit actions mapped to DICOM PS3.15 (Annex A.5) event IDs and event type codes, so the trail
can be exported to an Audit Record Repository in its own vocabulary."""

from audit.models import Action

# (EventID code, EventTypeCode) in DCM coding scheme.
EVENT_CODES: dict[str, tuple[str, str]] = {
    Action.LOGIN: ("110114", "110122"),  # User Authentication / Login
    Action.LOGIN_FAILED: ("110114", "110122"),
    # Security Alert / Use of Restricted Function: repeated failures from one account or address.
    Action.LOGIN_THROTTLED: ("110113", "110132"),
    Action.LOGOUT: ("110114", "110123"),  # User Authentication / Logout
    # Security Alert / User Security Attributes Changed
    Action.PASSWORD_CHANGED: ("110113", "110137"),
    Action.TWO_FACTOR_ENABLED: ("110113", "110137"),
    Action.TWO_FACTOR_FAILED: ("110114", "110122"),
    Action.TWO_FACTOR_DISABLED: ("110113", "110137"),
    Action.SESSION_EXPIRED: ("110114", "110123"),
    Action.TOKEN_ISSUED: ("110114", "110122"),
    Action.STUDY_VIEWED: ("110103", ""),  # DICOM Instances Accessed
    Action.FRAMES_RENDERED: ("110103", ""),
    Action.STUDY_DOWNLOADED: ("110106", ""),  # Export
    Action.STUDY_UPLOADED: ("110107", ""),  # Import
    Action.UPLOAD_REJECTED: ("110107", ""),
    # Received from a PACS or modality (C-STORE) or pushed by STOW-RS: DICOM Instances Transferred.
    Action.INSTANCES_RECEIVED: ("110104", ""),
    Action.STUDIES_QUERIED: ("110112", ""),  # Query
    Action.INSTANCES_RETRIEVED: ("110103", ""),  # DICOM Instances Accessed
    # Security Alert / Node Authentication: an unknown peer or a called AE title not ours.
    Action.ASSOCIATION_REFUSED: ("110113", "110126"),
    Action.REPORT_CHANGED: ("110103", ""),  # Instances Accessed (update)
    Action.AUDIT_READ: ("110101", ""),  # Audit Log Used
    Action.ACCESS_DENIED: ("110113", "110132"),  # Security Alert / Use of restricted function
    Action.AUDIT_VERIFIED: ("110101", ""),
    Action.POLICY_CHANGED: ("110113", "110129"),  # Security Alert / Security Configuration
    Action.TOKEN_REVOKED: ("110113", "110137"),  # Security Alert / User Security Attributes Changed
    # Guest links: granting or ending access changes an object's security attributes (110135);
    # passing or failing a gate is an authentication (110114/110122); a refused or probing
    # request is a security alert (110132); sending is application activity (110100).
    Action.LINK_CREATED: ("110113", "110135"),
    Action.LINK_EMAILED: ("110100", ""),
    Action.LINK_CODE_SENT: ("110100", ""),
    Action.LINK_CONFIRMED: ("110114", "110122"),
    Action.LINK_OPENED: ("110114", "110122"),
    Action.LINK_USED: ("110114", "110122"),
    Action.LINK_WRONG_PASSWORD: ("110114", "110122"),
    Action.LINK_WRONG_CODE: ("110114", "110122"),
    Action.LINK_REFUSED: ("110113", "110132"),
    Action.LINK_DELETED: ("110113", "110135"),
    Action.LINK_REVOKED: ("110113", "110135"),
    # Shares grant or end access: Security Alert / Object Security Attributes Changed.
    Action.SHARE_CREATED: ("110113", "110135"),
    Action.SHARE_REMOVED: ("110113", "110135"),
    Action.SHARE_CODE_SENT: ("110100", ""),
    Action.SHARE_CODE_VERIFIED: ("110114", "110122"),
    Action.SHARE_WRONG_CODE: ("110114", "110122"),
    Action.SHARE_BLOCKED: ("110113", "110135"),
    Action.SHARE_UNBLOCKED: ("110113", "110135"),
    Action.SHARE_ACTIVATED: ("110113", "110135"),
    # A new account: Security Alert / User Security Attributes Changed.
    Action.USER_REGISTERED: ("110113", "110137"),
    # Application Activity: the outbox gave up on an email or SMS, or an administrator sent one
    # again. DICOM has no event for messaging; these are the application's own doings.
    Action.MESSAGE_DEAD: ("110100", ""),
    Action.MESSAGE_RETRIED: ("110100", ""),
    # Folders only arrange shortcuts in a worklist; no access changes: Application Activity.
    Action.FOLDER_CREATED: ("110100", ""),
    Action.FOLDER_RENAMED: ("110100", ""),
    Action.FOLDER_MOVED: ("110100", ""),
    Action.FOLDER_DELETED: ("110100", ""),
    Action.STUDIES_FILED: ("110100", ""),
    # An administrator adds or changes users, memberships, roles, locations or groups: Security
    # Alert / User Security Attributes Changed.
    Action.ACCOUNTS_CHANGED: ("110113", "110137"),
}


def codes_for(action: str) -> tuple[str, str]:
    try:
        return EVENT_CODES[action]
    except KeyError as exc:
        raise ValueError(f"Audit action {action!r} has no DICOM event code") from exc
