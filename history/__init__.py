"""The audit trail: every change of a field that can change an outcome (a user's weight, admin flag
and active flag; a session's terms), with who, when, before and after, whichever path made it."""
