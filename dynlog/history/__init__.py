"""History and maintenance: reading journals at a point in time (walk), the event history
(replay), point-in-time restore, diff, compaction and fsck. Read-side tools over the journals;
the only writes are compact's and fsck --repair's, and restore's through the file-system API."""
