"""afmwatch: watch an AFM export folder, classify each scan good/bad, sort it, record why."""

__version__ = "0.1.0"

# at import, so a script that calls the library before configuring logging keeps its stdout for results
from afmwatch.log import log_to_stderr_until_configured

log_to_stderr_until_configured()
