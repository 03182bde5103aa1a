"""The Docker HEALTHCHECK of a web container: GET /healthz from this container's web process.

Django answers 400 to a Host it does not allow, so the check sends the first of ALLOWED_HOSTS
(the app's own rule decides, as it would for any client). Standard library only; exit 0 = healthy.
"""

import os
import sys
import urllib.request

port = os.environ.get("FLASHBID_WEB_PORT", "8000")
allowed = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip() not in ("", "*")]
host = allowed[0].lstrip(".") if allowed else "localhost"
request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": host})
try:
    with urllib.request.urlopen(request, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 (any failure is "unhealthy")
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
