"""What every floor (datasets, models, frechet, learning, the scripts) may import: the one
error type, atomic file writes, progress of long passes, reading image files. Imports nothing
of the project's."""
