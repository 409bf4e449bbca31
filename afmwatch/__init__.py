"""afmwatch: watch an AFM export folder, classify each scan good/bad, sort it, record why."""

__version__ = "0.1.0"
