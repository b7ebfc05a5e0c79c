import os
import tempfile

HEARTBEAT = os.path.join(tempfile.gettempdir(), "beat-heartbeat")
