"""What every floor (datasets, models, learning, the scripts) may import: the one error
type, atomic file writes, progress of long passes. Imports nothing of the project's."""
